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
  assert.match(await page.locator('h1').first().textContent(), /My grids/);
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
