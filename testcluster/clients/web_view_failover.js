// Browser test of the web view `testcluster up` serves, in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core; no browser is downloaded).
//
//   node web_view_failover.js <url> <topic> <partitions> <before.png> <after.png>
//
// Opens the page, waits until it shows a controller, its epoch and a leader for each of the
// topic's partitions, takes the "before" screenshot, clicks the page's "kill controller" button
// and waits (bounded) until the page shows another controller, a higher epoch, the killed
// broker dead and out of /brokers/ids, and every partition it led led by another broker; then
// takes the "after" screenshot. Prints one line `RESULT {json}` with what the page showed, for
// the Rust test to check against ZooKeeper. Exits 1 with the reason (and the page's text) when
// a step times out.
'use strict';
const { chromium } = require('playwright-core');

const [url, topic, partitionsArg, beforePng, afterPng] = process.argv.slice(2);
if (!afterPng) {
  console.error('usage: node web_view_failover.js <url> <topic> <partitions> <before.png> <after.png>');
  process.exit(2);
}
const partitions = Number(partitionsArg);
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

// What the page shows right now, read from its DOM as a user reads it.
function readPage(topic) {
  const text = (id) => document.getElementById(id).textContent.trim();
  const m = /^broker (\d+)$/.exec(text('controller'));
  const epoch = /^\d+$/.test(text('epoch')) ? Number(text('epoch')) : null;
  const leaders = {};
  for (const row of document.querySelectorAll('tr.partition')) {
    const tp = row.dataset.tp;
    if (tp.startsWith(topic + '-')) {
      leaders[tp.slice(topic.length + 1)] = Number(row.querySelector('td.leader').textContent);
    }
  }
  const brokers = {};
  for (const row of document.querySelectorAll('tr[id^="broker-"]')) {
    const cells = row.querySelectorAll('td');
    brokers[row.id.slice('broker-'.length)] = {
      process: cells[2].textContent.trim(),
      registered: cells[3].textContent.trim() === 'yes',
    };
  }
  return {
    controller: m ? Number(m[1]) : null,
    epoch,
    leaders,
    brokers,
    message: text('msg'),
    timeline: document.getElementById('timeline').textContent,
  };
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    // Root in a container: Chromium's sandbox needs user namespaces it may not have.
    args: ['--no-sandbox'],
  });
  const page = await browser.newPage({ viewport: { width: 1200, height: 1700 } });
  const fail = async (what, err) => {
    const body = await page.evaluate(() => document.body.innerText).catch(() => '?');
    console.error(`FAILED: ${what}: ${err && err.message ? err.message : err}\n--- page text ---\n${body}`);
    await browser.close();
    process.exit(1);
  };
  try {
    await page.goto(url, { timeout: 30000 });
  } catch (e) {
    await fail(`opening ${url}`, e);
  }

  // 1. The page shows a controller, an epoch and a leader for every partition.
  try {
    await page.waitForFunction(
      ([topic, n]) => {
        const ctl = /^broker \d+$/.test(document.getElementById('controller').textContent);
        const rows = [...document.querySelectorAll('tr.partition')].filter((r) =>
          r.dataset.tp.startsWith(topic + '-'));
        return ctl && rows.length === n &&
          rows.every((r) => Number(r.querySelector('td.leader').textContent) >= 0);
      },
      [topic, partitions],
      { timeout: 60000, polling: 100 },
    );
  } catch (e) {
    await fail('waiting for the page to show the controller and the leaders', e);
  }
  const before = await page.evaluate(readPage, topic);
  const killed = before.controller;
  const moved = Object.keys(before.leaders).filter((p) => before.leaders[p] === killed);
  if (moved.length === 0) {
    await fail('checking the set-up', `controller ${killed} leads no partition of ${topic}: ` +
      'killing it would move no leader');
  }
  await page.screenshot({ path: beforePng });

  // 2. Click the button, as a learner would.
  const clickedAt = Date.now();
  await page.click('#kill-controller');
  try {
    await page.waitForFunction(
      (id) => document.getElementById('msg').textContent.includes(`broker ${id}`),
      killed,
      { timeout: 30000, polling: 100 },
    );
  } catch (e) {
    await fail('waiting for the answer to the click', e);
  }
  const answer = await page.evaluate(() => document.getElementById('msg').textContent);
  if (!/killed/.test(answer)) {
    await fail('reading the answer to the click', answer);
  }

  // 3. The page shows the failover: a new controller, a higher epoch, the dead broker gone
  //    from /brokers/ids, its partitions led elsewhere, and the election in the timeline.
  try {
    await page.waitForFunction(
      ([topic, b]) => {
        const ctl = /^broker (\d+)$/.exec(document.getElementById('controller').textContent);
        const epoch = Number(document.getElementById('epoch').textContent);
        if (!ctl || Number(ctl[1]) === b.controller || !(epoch > b.epoch)) return false;
        const row = document.getElementById('broker-' + b.controller);
        if (!row) return false;
        const cells = row.querySelectorAll('td');
        if (cells[2].textContent.trim() !== 'dead' || cells[3].textContent.trim() !== 'no') {
          return false;
        }
        for (const r of document.querySelectorAll('tr.partition')) {
          if (!r.dataset.tp.startsWith(topic + '-')) continue;
          const leader = Number(r.querySelector('td.leader').textContent);
          if (leader < 0 || leader === b.controller) return false;
        }
        return document.getElementById('timeline').textContent.includes('elected');
      },
      [topic, { controller: before.controller, epoch: before.epoch }],
      { timeout: 90000, polling: 100 },
    );
  } catch (e) {
    await fail('waiting for the page to show the failover', e);
  }
  const after = await page.evaluate(readPage, topic);
  const seconds = (Date.now() - clickedAt) / 1000;
  await page.screenshot({ path: afterPng });
  await browser.close();
  console.log('RESULT ' + JSON.stringify({ killed, moved, answer, seconds, before, after }));
}

main().catch((e) => {
  console.error('FAILED:', e);
  process.exit(1);
});
