// Browser tests of the ledgers (民情台账, 政务台账), their downloads and the statistics page,
// against the real server binary started by scripts/console-tests.sh (CONSOLE_URL, users
// made through the real CLI). The script gives users and grids; what phones push is for the
// script's data seeding, so these tests check what any data set must show: the headers,
// the filters, the files' shape and the charts.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import { chromium } from 'playwright-core';

const BASE = process.env.CONSOLE_URL;
const PW = process.env.CONSOLE_PASSWORD;
const SHOTS = process.env.CONSOLE_SCREENSHOTS ?? 'screenshots';
if (!BASE || !PW) throw new Error('CONSOLE_URL and CONSOLE_PASSWORD must be set (scripts/console-tests.sh)');
mkdirSync(SHOTS, { recursive: true });

const RECORD_HEADERS = ['编号', '网格', '上报时间', '类别', '状态', '反映人', '楼栋', '地点', '摘要',
  '代办数', '未办结代办', '办结时间', '登记人'];

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
});
after(async () => { await browser?.close(); });

async function signedIn(user) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, acceptDownloads: true });
  const page = await context.newPage();
  await page.goto(`${BASE}/console/login`);
  await page.fill('#user', user);
  await page.fill('#password', PW);
  await Promise.all([page.waitForNavigation(), page.click('#login')]);
  assert.equal(new URL(page.url()).pathname, '/console/', `${user} is signed in`);
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** Clicks a link that answers with a file; the download and its bytes. */
async function download(page, selector) {
  const [dl] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  const path = await dl.path();
  return { name: dl.suggestedFilename(), bytes: readFileSync(path) };
}

/** The rows of a CSV text (RFC 4180: quoted fields may hold commas, quotes and lines). */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let cell = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; } else if (c === '"') quoted = false; else cell += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') { row.push(cell); cell = ''; } else if (c === '\r' && text[i + 1] === '\n') {
      row.push(cell); rows.push(row); row = []; cell = ''; i++;
    } else cell += c;
  }
  if (cell !== '' || row.length > 0) { row.push(cell); rows.push(row); }
  return rows;
}

/** The entries of a zip archive (an .xlsx), inflated: name → Buffer. */
function unzip(buf) {
  // The end-of-central-directory record: its signature, searched from the end.
  let eocd = buf.length - 22;
  while (eocd >= 0 && buf.readUInt32LE(eocd) !== 0x06054b50) eocd--;
  assert.ok(eocd >= 0, 'a zip archive');
  const count = buf.readUInt16LE(eocd + 10);
  let at = buf.readUInt32LE(eocd + 16);
  const out = new Map();
  for (let i = 0; i < count; i++) {
    assert.equal(buf.readUInt32LE(at), 0x02014b50, 'a central directory entry');
    const method = buf.readUInt16LE(at + 10);
    const size = buf.readUInt32LE(at + 20);
    const nameLen = buf.readUInt16LE(at + 28);
    const extraLen = buf.readUInt16LE(at + 30);
    const commentLen = buf.readUInt16LE(at + 32);
    const local = buf.readUInt32LE(at + 42);
    const name = buf.subarray(at + 46, at + 46 + nameLen).toString('utf8');
    const dataAt = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const data = buf.subarray(dataAt, dataAt + size);
    out.set(name, method === 8 ? inflateRawSync(data) : Buffer.from(data));
    at += 46 + nameLen + extraLen + commentLen;
  }
  return out;
}

test('the 民情台账 shows its Chinese headers, filters by grid and downloads as CSV and xlsx', async () => {
  const { context, page } = await signedIn('u-g1');
  await page.click('#nav-ledgers');
  assert.equal(new URL(page.url()).pathname, '/console/ledgers/records');
  const headers = await page.locator('#ledger thead th').allTextContents();
  assert.deepEqual(headers, RECORD_HEADERS);
  // The filter: a range and the user's one grid; g2 is not offered.
  const options = await page.locator('#grid option').evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual(options, ['', 'g1']);
  await page.fill('#from', '2026-01-01');
  await page.fill('#to', '2026-12-31');
  await page.selectOption('#grid', 'g1');
  await Promise.all([page.waitForNavigation(), page.click('#show')]);
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('from'), '2026-01-01');
  assert.equal(url.searchParams.get('grid'), 'g1');
  const shown = await page.locator('#ledger tbody tr').count();
  assert.match(await page.locator('#row-count').textContent(), /共 \d+ 条/);
  await shot(page, 'ledgers-01-records');

  const csv = await download(page, '#export-csv');
  assert.equal(csv.name, '民情台账-第一网格-2026-01-01_2026-12-31.csv');
  assert.deepEqual([...csv.bytes.subarray(0, 3)], [0xef, 0xbb, 0xbf], 'a UTF-8 BOM');
  const rows = parseCsv(csv.bytes.subarray(3).toString('utf8'));
  assert.deepEqual(rows[0], RECORD_HEADERS);
  const total = Number((await page.locator('#row-count').textContent()).match(/\d+/)[0]);
  assert.equal(rows.length - 1, total, 'every row of the range, not only the page');
  assert.ok(shown <= 100 && shown <= total);
  for (const row of rows.slice(1)) {
    assert.equal(row.length, RECORD_HEADERS.length);
    for (const cell of row) assert.ok(!/^[=+\-@\t\r]/.test(cell), `no live formula: ${cell}`);
  }

  const xlsx = await download(page, '#export-xlsx');
  assert.equal(xlsx.name, '民情台账-第一网格-2026-01-01_2026-12-31.xlsx');
  const files = unzip(xlsx.bytes);
  const workbook = files.get('xl/workbook.xml').toString('utf8');
  assert.match(workbook, /name="民情台账"/);
  assert.match(workbook, /name="合计"/);
  const strings = files.get('xl/sharedStrings.xml').toString('utf8');
  for (const h of RECORD_HEADERS) assert.ok(strings.includes(`<t>${h}</t>`), h);
  for (const label of ['民情条数', '按类别', '按状态', '导出人']) assert.ok(strings.includes(label), label);
  const sheet = files.get('xl/worksheets/sheet1.xml').toString('utf8');
  assert.ok(!sheet.includes('<f>'), 'no formula cell');
  await context.close();
});

test('the 政务台账 and a grid that is not the user\'s', async () => {
  const { context, page } = await signedIn('u-g1');
  await page.goto(`${BASE}/console/ledgers/records?from=2026-01-01&to=2026-12-31`);
  await Promise.all([page.waitForNavigation(), page.click('#tab-tasks')]);
  assert.equal(new URL(page.url()).pathname, '/console/ledgers/tasks');
  assert.equal(new URL(page.url()).searchParams.get('from'), '2026-01-01', 'the tab keeps the filter');
  const headers = await page.locator('#ledger thead th').allTextContents();
  assert.equal(headers.length, 20);
  assert.deepEqual(headers.slice(0, 3), ['编号', '网格', '创建时间']);
  assert.ok(headers.includes('是否按期') && headers.includes('满意度'));
  assert.match(await page.locator('#totals').textContent(), /按期办结率/);
  await shot(page, 'ledgers-02-tasks');
  const xlsx = await download(page, '#export-xlsx');
  assert.equal(xlsx.name, '政务台账-2026-01-01_2026-12-31.xlsx');
  const strings = unzip(xlsx.bytes).get('xl/sharedStrings.xml').toString('utf8');
  for (const label of ['代办件数', '按期办结率', '平均满意度', '已超期']) assert.ok(strings.includes(label), label);

  const resp = await page.goto(`${BASE}/console/ledgers/tasks?grid=g2`);
  assert.equal(resp.status(), 404);
  assert.match(await page.locator('#message').textContent(), /页面不存在/);
  const bad = await page.goto(`${BASE}/console/ledgers/tasks?from=2026-02-30`);
  assert.equal(bad.status(), 400);
  assert.match(await page.locator('#message').textContent(), /YYYY-MM-DD/);
  await shot(page, 'ledgers-03-bad-date');
  await context.close();
});

test('the statistics page draws its charts as inline SVG', async () => {
  const { context, page } = await signedIn('u-admin');
  await page.click('#nav-stats');
  assert.equal(new URL(page.url()).pathname, '/console/stats');
  assert.equal(await page.locator('svg#coverage-chart').count(), 1);
  assert.equal(await page.locator('svg#tasks-chart').count(), 1);
  assert.match(await page.locator('svg#coverage-chart title').first().textContent(), /覆盖率/);
  // Six months by default, each labelled under the axis.
  const from = await page.inputValue('#from');
  const to = await page.inputValue('#to');
  assert.match(from, /^\d{4}-\d{2}$/);
  assert.match(to, /^\d{4}-\d{2}$/);
  const labels = await page.locator('svg#coverage-chart > text').allTextContents();
  assert.ok(labels.includes(to), `${to} in ${labels}`);
  const options = await page.locator('#grid option').evaluateAll((os) => os.map((o) => o.value));
  assert.deepEqual(options, ['', 'g1', 'g2']);
  const box = await page.locator('svg#coverage-chart').boundingBox();
  assert.ok(box && box.width > 300 && box.height > 100, 'the chart is drawn');
  await shot(page, 'ledgers-04-stats');
  await page.click('#lang');
  await page.goto(`${BASE}/console/stats`);
  assert.match(await page.locator('h1').first().textContent(), /Statistics/);
  assert.match(await page.locator('#stats-visits thead').textContent(), /Coverage/);
  await shot(page, 'ledgers-05-stats-english');
  await context.close();
});
