// Browser tests of the station console against the real server binary, driven in Debian's
// headless chromium by playwright-core. Run by scripts/console-tests.sh, which starts the
// server (CONSOLE_URL) with the users and passwords below made through the real CLI.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';

const BASE = process.env.CONSOLE_URL;
const PW = process.env.CONSOLE_PASSWORD;
const SHOTS = process.env.CONSOLE_SCREENSHOTS ?? 'screenshots';
if (!BASE || !PW) throw new Error('CONSOLE_URL and CONSOLE_PASSWORD must be set (scripts/console-tests.sh)');
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu'],
  });
});
after(async () => { await browser?.close(); });

async function fresh() {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const page = await context.newPage();
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function login(page, user, password = PW) {
  await page.goto(`${BASE}/console/login`);
  await page.fill('#user', user);
  await page.fill('#password', password);
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.click('#login'),
  ]);
  return resp;
}

test('a user logs in and sees their grids', async () => {
  const { context, page } = await fresh();
  await page.goto(`${BASE}/console/`);
  assert.equal(new URL(page.url()).pathname, '/console/login', 'sent to the login page');
  await shot(page, '01-login');
  await login(page, 'u-g1');
  assert.equal(new URL(page.url()).pathname, '/console/');
  const grids = await page.locator('#grids tbody tr').allTextContents();
  assert.equal(grids.length, 1);
  assert.match(grids[0], /g1/);
  await shot(page, '02-home');
  await page.click('a[href="/console/grids/g1"]');
  assert.match(await page.locator('#grid-title').textContent(), /第一网格/);
  await shot(page, '03-grid');
  await page.click('#lang');
  assert.match(await page.locator('h1').first().textContent(), /Supervision board/);
  await shot(page, '04-home-english');
  await context.close();
});

test('five wrong passwords lock the account; the right one is then refused', async () => {
  const { context, page } = await fresh();
  for (let i = 1; i <= 5; i++) {
    const resp = await login(page, 'u-lock', `wrong password ${i}`);
    assert.equal(resp.status(), 401, `failure ${i}`);
  }
  const resp = await login(page, 'u-lock');
  assert.equal(resp.status(), 429);
  assert.equal(new URL(page.url()).pathname, '/console/login', 'not signed in');
  assert.match(await page.locator('#login-error').textContent(), /账户已锁定/);
  await shot(page, '05-locked');
  const cookies = await context.cookies();
  assert.ok(!cookies.some((c) => c.name === 'xiuhua_console'), 'no session cookie');
  await context.close();
});

test('a form posted without its CSRF token is refused', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-admin');
  await page.goto(`${BASE}/console/admin`);
  await shot(page, '06-admin');
  await page.fill('#add-user input[name=id]', 'u-csrf');
  await page.fill('#add-user input[name=name]', '无令牌');
  await page.locator('#add-user input[name=csrf]').evaluate((el) => el.remove());
  const [resp] = await Promise.all([
    page.waitForNavigation(),
    page.click('#add-user button'),
  ]);
  assert.equal(resp.status(), 403);
  assert.match(await page.locator('#message').textContent(), /表单已失效/);
  await shot(page, '07-csrf-refused');
  await page.goto(`${BASE}/console/admin`);
  assert.ok(!(await page.locator('#users').textContent()).includes('u-csrf'), 'no user was added');
  await context.close();
});

test('logout ends the session, also for a copy of its cookie', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-g1');
  const session = (await context.cookies()).find((c) => c.name === 'xiuhua_console');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  await Promise.all([page.waitForNavigation(), page.click('#logout')]);
  assert.equal(new URL(page.url()).pathname, '/console/login');
  const other = await fresh();
  await other.context.addCookies([session]);
  await other.page.goto(`${BASE}/console/`);
  assert.equal(new URL(other.page.url()).pathname, '/console/login', 'the copied cookie opens nothing');
  await other.context.close();
  await context.close();
});

test('a 网格员 of another grid gets 404 for a grid that is not theirs', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-g2');
  const theirs = await page.goto(`${BASE}/console/grids/g1`);
  assert.equal(theirs.status(), 404);
  const theirsText = await page.locator('main').textContent();
  await shot(page, '08-not-found');
  const missing = await page.goto(`${BASE}/console/grids/no-such-grid`);
  assert.equal(missing.status(), 404);
  assert.equal(await page.locator('main').textContent(), theirsText, 'the same 404');
  const own = await page.goto(`${BASE}/console/grids/g2`);
  assert.equal(own.status(), 200);
  await context.close();
});

test('an admin creates an enrollment code and sees its QR code', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-admin');
  await page.goto(`${BASE}/console/admin`);
  await Promise.all([
    page.waitForNavigation(),
    page.click('button.enroll[data-user="u-g1"]'),
  ]);
  assert.match(await page.locator('#code').textContent(), /^[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}$/);
  assert.equal(await page.locator('#server-url').textContent(), BASE);
  const qr = page.locator('#qr svg');
  assert.equal(await qr.count(), 1);
  const box = await qr.boundingBox();
  assert.ok(box.width > 100 && box.height > 100, 'a visible QR code');
  await shot(page, '09-enroll-code');
  await page.goto(`${BASE}/console/audit`);
  const audit = await page.locator('#audit').textContent();
  assert.match(audit, /enroll_code/);
  assert.match(audit, /refused: account locked/);
  await shot(page, '10-audit');
  await context.close();
});

// ----- the work pages, against a real phone (PHONE_BIN, seeded by console-tests.sh) -----

import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

if (!process.env.PHONE_SEED || !process.env.PHONE_BIN) throw new Error('PHONE_SEED and PHONE_BIN must be set (scripts/console-tests.sh)');
const SEED = JSON.parse(readFileSync(process.env.PHONE_SEED, 'utf8'));

function phoneSync() {
  return JSON.parse(execFileSync(process.env.PHONE_BIN, ['sync', process.env.PHONE_DIR], { encoding: 'utf8' }));
}

async function count(page, column) {
  return Number(await page.locator(`#count-${column} .n`).textContent());
}

test('the board counts what the synced phone counts', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-staff');
  await page.goto(`${BASE}/console/?grid=g1`);
  for (const [column, n] of Object.entries(SEED.counts)) {
    assert.equal(await count(page, column), n, column);
  }
  assert.equal(await page.locator(`#board tr[data-task="${SEED.tasks.late}"]`).count(), 1, 'the overdue task is listed');
  assert.match(await page.locator(`#board tr[data-task="${SEED.tasks.late}"] td.overdue`).textContent(), /^1$/);
  await shot(page, '11-board');
  // Another column, filtered by level, keeps its filters in the count links.
  await page.click('#count-awaiting_assign');
  assert.equal(await page.locator(`#board tr[data-task="${SEED.tasks.waiting}"]`).count(), 1);
  await page.selectOption('select[name=level]', '党群办');
  await Promise.all([page.waitForNavigation(), page.click('#apply')]);
  assert.equal(await page.locator('#no-tasks').count(), 1, 'no 党群办 task awaits 派单');
  await context.close();
});

test('督单 with a new deadline in the browser reaches the phone at its next sync', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-staff');
  await page.goto(`${BASE}/console/tasks/${SEED.tasks.working}`);
  await page.fill('#act-supervise input[name=text]', '请今天内修好');
  const soon = new Date(Date.now() + 3 * 86400000 + 8 * 3600000).toISOString().slice(0, 16);
  await page.fill('#act-supervise input[name=deadline]', soon);
  const [resp] = await Promise.all([page.waitForNavigation(), page.click('#act-supervise button')]);
  assert.equal(resp.status(), 200);
  assert.match(await page.locator('#flash').textContent(), /已记录：督单/);
  assert.match(await page.locator('#timeline').textContent(), /请今天内修好/);
  await shot(page, '12-task');
  const phone = phoneSync().tasks[SEED.tasks.working];
  assert.equal(phone.last_kind, 'supervise');
  assert.equal(phone.last_author, 'u-staff');
  assert.equal(phone.last_text, '请今天内修好');
  assert.ok(phone.deadline > Date.now() + 2 * 86400000, 'the new deadline');
  await context.close();
});

test('问单 with send-back by the secretary reopens a done task on the phone', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-sec');
  await page.goto(`${BASE}/console/tasks/${SEED.tasks.done}`);
  assert.equal(await page.locator('#act-assign').count(), 0, 'no 派单 of a done task');
  await page.fill('#act-inquire input[name=text]', '居民反映还没办好');
  await page.check('#act-inquire input[name=send_back]');
  await Promise.all([page.waitForNavigation(), page.click('#act-inquire button')]);
  assert.match(await page.locator('#flash').textContent(), /问单/);
  assert.equal(phoneSync().tasks[SEED.tasks.done].status, 'in_progress');
  await context.close();
});

test('a household is found by pinyin and shown with masked numbers and its history', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-staff');
  await page.goto(`${BASE}/console/households`);
  await page.fill('#q', 'zhangsan');
  await Promise.all([page.waitForNavigation(), page.click('#search')]);
  await shot(page, '13-households');
  await Promise.all([page.waitForNavigation(), page.click(`a[href="/console/households/${SEED.household}"]`)]);
  const text = await page.locator('main').textContent();
  assert.match(text, /张三/);
  assert.ok(!text.includes('13800138000'), 'the phone number is masked');
  assert.match(await page.locator('#history').textContent(), /王伟/);
  await shot(page, '14-household');
  await context.close();
});

test('a 网格员 of another grid gets the same 404 for a task URL', async () => {
  const { context, page } = await fresh();
  await login(page, 'u-g2');
  const theirs = await page.goto(`${BASE}/console/tasks/${SEED.tasks.working}`);
  assert.equal(theirs.status(), 404);
  const text = await page.locator('main').textContent();
  const missing = await page.goto(`${BASE}/console/tasks/no-such-task`);
  assert.equal(missing.status(), 404);
  assert.equal(await page.locator('main').textContent(), text);
  await context.close();
});
