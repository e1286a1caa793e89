// The operator page itself in real headless Chromium against the real `helpline serve`: served
// with its policy, Italian by default and English on request (kept across reloads), the sign-in
// form with its errors (wrong password, rate limit), the shortcuts' help, the signed-in layout
// and signing out. Nothing here needs a call. Screenshots go to tests/browser/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { screenshot, signIn } from './lib/server.mjs';
import { Scene, watchedPage } from './lib/scene.mjs';

describe('the operator page', () => {
  let server;
  let page;
  let anna;
  const pageErrors = [];
  const scene = new Scene('helpline-page-');

  before(async () => {
    server = await scene.startServer();
    anna = server.addUser({ name: 'anna', languages: ['it', 'fr'], areas: ['salute'] });
    server.addUser({ name: 'bruno', languages: ['it'], areas: ['casa'] });
    const browser = await scene.launchBrowser();
    ({ page } = await watchedPage(browser, { width: 1400, height: 900 }, pageErrors));
  });

  after(() => scene.close());

  test('the root leads to the console, served with a strict policy, in Italian', async () => {
    const response = await page.goto(`${server.url}/`);
    assert.equal(new URL(page.url()).pathname, '/console');
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /default-src 'self'/);
    assert.match(headers['content-security-policy'], /script-src 'self'/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await page.locator('#signin').waitFor({ state: 'visible' });
    assert.equal(await page.locator('html').getAttribute('lang'), 'it');
    assert.equal(await page.title(), 'Helpline — console operatore');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'signin-name', 'the form has the focus');
    await screenshot(page, 'page-01-sign-in');
  });

  test('a wrong password is refused with a clear message', async () => {
    await page.getByLabel('Nome utente').fill('anna');
    await page.getByLabel('Password', { exact: true }).fill('not the password');
    await page.getByRole('button', { name: 'Accedi' }).click();
    await page.getByText('Nome utente o password errati.').waitFor();
    assert.equal(await page.getByRole('alert').filter({ hasText: 'errati' }).count(), 1, 'said in an alert region');
    assert.ok(await page.locator('#signin').isVisible());
    await screenshot(page, 'page-02-wrong-password');
  });

  test('too many wrong passwords for one name are rate limited, and the page says so', async () => {
    let message = '';
    for (let i = 0; i < 7 && !/Troppi tentativi/.test(message); i++) {
      await page.getByLabel('Nome utente').fill('bruno');
      await page.getByLabel('Password', { exact: true }).fill(`wrong-${i}`);
      const answer = page.waitForResponse((r) => r.url().endsWith('/api/session') && r.request().method() === 'POST');
      await page.getByRole('button', { name: 'Accedi' }).click();
      await answer;
      await page.waitForFunction(() => document.querySelector('#signin-error').textContent !== '');
      message = await page.locator('#signin-error').textContent();
    }
    assert.match(message, /Troppi tentativi\. Riprova tra \d+ secondi\./);
    await screenshot(page, 'page-03-rate-limited');
  });

  test('signing in shows the workspace: presence, queue, callbacks, connection', async () => {
    await signIn(page, server, anna);
    assert.equal(await page.locator('#me').textContent(), 'anna');
    for (const id of ['presence', 'conn', 'signout', 'signout-everywhere']) {
      assert.ok(await page.locator(`#${id}`).isVisible(), `#${id} is shown`);
    }
    await page.getByRole('heading', { name: 'Coda' }).waitFor();
    await page.getByRole('heading', { name: 'Richiamate' }).waitFor();
    assert.equal(await page.getByRole('radio').count(), 3, 'available, paused, offline');
    await screenshot(page, 'page-04-signed-in');
  });

  test('the help lists every shortcut', async () => {
    await page.locator('#stage').focus();
    await page.keyboard.press('?');
    const help = page.getByRole('dialog');
    await help.waitFor({ state: 'visible' });
    for (const key of ['/', 'A', 'D', 'Alt+1', 'Alt+2', 'Alt+3', 'N', 'Alt+E', 'R', 'Alt+L', 'Esc']) {
      assert.equal(await help.locator('kbd', { hasText: new RegExp(`^${key.replace(/[+/?]/g, '\\$&')}$`) }).count(), 1, `${key} is listed`);
    }
    await screenshot(page, 'page-05-help');
    await page.keyboard.press('Escape');
    await help.waitFor({ state: 'hidden' });
  });

  test('English on request, kept across a reload, and Italian again with Alt+L', async () => {
    await page.getByRole('button', { name: 'English' }).click();
    await page.getByRole('heading', { name: 'Queue' }).waitFor();
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    await page.reload();
    await page.getByRole('heading', { name: 'Queue' }).waitFor();
    assert.equal(await page.title(), 'Helpline — operator console');
    await screenshot(page, 'page-06-english');
    await page.locator('#stage').focus();
    await page.keyboard.press('Alt+L');
    await page.getByRole('heading', { name: 'Coda' }).waitFor();
    assert.equal(await page.evaluate(() => localStorage.getItem('helpline.lang')), 'it');
  });

  test('signing out returns to the form and ends the session', async () => {
    await page.getByRole('button', { name: 'Esci', exact: true }).click();
    await page.locator('#signin').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(async () => (await fetch('/api/session')).status), 401);
    await page.reload();
    await page.locator('#signin').waitFor({ state: 'visible' });
  });

  test('the first admin chooses their own password before anything else', async () => {
    // Nobody was at a terminal when the server started: the password is in a file only its
    // owner can read.
    const file = join(server.dir, 'data', 'first-admin-password');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const password = readFileSync(file, 'utf8').match(/^password: (.+)$/m)[1];
    await page.getByLabel('Nome utente').fill('admin');
    await page.getByLabel('Password', { exact: true }).fill(password);
    await page.getByRole('button', { name: 'Accedi' }).click();
    await page.getByRole('heading', { name: 'Scegli la tua password' }).waitFor();
    assert.ok(!(await page.locator('#workspace').isVisible()), 'no workspace before a password of their own');
    await screenshot(page, 'page-08-choose-password');
    await page.getByLabel('Password attuale').fill(password);
    await page.getByLabel('Nuova password', { exact: true }).fill('the admin chose this one');
    await page.getByLabel('Ripeti la nuova password').fill('the admin chose this two');
    await page.getByRole('button', { name: 'Salva la password' }).click();
    await page.getByText('Le due nuove password non coincidono.').waitFor();
    await page.getByLabel('Ripeti la nuova password').fill('the admin chose this one');
    await page.getByRole('button', { name: 'Salva la password' }).click();
    await page.locator('#workspace').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#me').textContent(), 'admin');
    assert.equal(await page.evaluate(async () => (await fetch('/api/calls')).status), 200, 'the API answers now');
    await page.getByRole('button', { name: 'Esci', exact: true }).click();
    await page.locator('#signin').waitFor({ state: 'visible' });
  });

  test('no script errors on the page', () => {
    // Refused sign-ins, the signed-out `GET /api/session` and an absent socket server are
    // network answers the browser logs, not script errors.
    const unexpected = pageErrors.filter((e) => !/Failed to load resource|WebSocket connection/.test(e));
    assert.deepEqual(unexpected, []);
  });
});
