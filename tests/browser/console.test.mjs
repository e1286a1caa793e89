// The operator console in real headless Chromium against the real `helpline serve`:
// sign-in, presence, a call placed through the signed JSON webhook offered with its screen-pop,
// accept, search as you type, a referral, an autosaved note that survives reloads, a disposition,
// end of call and wrap-up; a second operator, signed in on a second node sharing the PostgreSQL
// database (HELPLINE_TEST_DATABASE_URL; without it one SQLite node), sees the queue change; a
// reconnect replays what the page missed. Screenshots of each step go to tests/browser/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Frames } from './lib/frames.mjs';
import { REPO, screenshot, signIn } from './lib/server.mjs';
import { Scene, watchedPage } from './lib/scene.mjs';

const CALL = 'browser-call-1';
const NUMBER = '+39 333 765 4321';
const NOTE_1 = 'Chiede un alloggio temporaneo a Como, famiglia di quattro persone.';
const NOTE_2 = ' Richiamare lunedì.';

describe('the operator console', () => {
  let server;
  let server2; // the second operator's node: another process on the same PostgreSQL, or `server`
  let giulia; // the operator who takes the call (Italian, housing)
  let marco; // a second operator (English, work), who only watches the queue
  let ctx1;
  let page;
  let page2;
  let frames;
  let frames2;
  const pageErrors = [];
  const scene = new Scene('helpline-console-');

  before(async () => {
    let shared;
    ({ server, server2, shared } = await scene.startNodes());
    if (!shared) console.log('# HELPLINE_TEST_DATABASE_URL is unset: both operators on one SQLite node');
    giulia = server.addUser({ name: 'giulia', languages: ['it', 'en'], areas: ['casa', 'lavoro'], sipTarget: 'sip:giulia@pbx.example.org' });
    marco = server.addUser({ name: 'marco', languages: ['en'], areas: ['lavoro'] });
    const browser = await scene.launchBrowser();
    ({ ctx: ctx1, page } = await watchedPage(browser, { width: 1400, height: 950 }, pageErrors));
    ({ page: page2 } = await watchedPage(browser, { width: 1200, height: 800 }, pageErrors));
    frames = new Frames(page);
    frames2 = new Frames(page2);
  });

  after(() => scene.close());

  test('the page loads without errors and refuses a wrong password', async () => {
    const response = await page.goto(`${server.url}/`);
    assert.equal(new URL(page.url()).pathname, '/console', 'the root redirects to the console');
    assert.match(response.headers()['content-security-policy'], /script-src 'self'/);
    await page.locator('#signin').waitFor({ state: 'visible' });
    assert.equal(await page.locator('html').getAttribute('lang'), 'it', 'Italian by default');
    await screenshot(page, '01-sign-in');

    await page.getByLabel('Nome utente').fill(giulia.name);
    await page.getByLabel('Password', { exact: true }).fill('not the password');
    await page.getByRole('button', { name: 'Accedi' }).click();
    await page.getByText('Nome utente o password errati.').waitFor();
    assert.ok(await page.locator('#signin').isVisible(), 'still on the form');
    await screenshot(page, '02-sign-in-refused');
  });

  test('both operators sign in and connect', async () => {
    await signIn(page, server, giulia);
    await signIn(page2, server2, marco);
    const hello = await frames.sentMessage('hello');
    assert.equal(hello.last_seq, 0, 'a fresh tab has seen nothing');
    const welcome = await frames.gotMessage('welcome');
    assert.equal(welcome.user.name, 'giulia');
    await frames2.gotMessage('welcome');
    await page.locator('#conn[data-state="online"]').waitFor();
    await page2.locator('#conn[data-state="online"]').waitFor();
    assert.equal(await page.locator('#me').textContent(), 'giulia');
    await page.locator('#queue-empty').waitFor({ state: 'visible' });
    await screenshot(page, '03-signed-in');
  });

  test('a call placed through the webhook reaches both queues with its waiting time ticking', async () => {
    const seqBefore = frames2.lastSeq();
    await server.placeCall(CALL, { from: NUMBER, areaDigit: '3', cap: '22100' });
    await frames2.gotMessage('queue', { where: (m) => m.calls.some((c) => c.call_id === CALL) });
    assert.ok(frames2.lastSeq() > seqBefore, 'queue messages carry a seq');
    const row = page2.locator(`#queue-rows tr[data-call="${CALL}"]`);
    await row.waitFor();
    assert.match(await row.textContent(), /Como/);
    assert.match(await row.textContent(), /Casa/);
    const first = await row.locator('td.wait').textContent();
    await page2.waitForFunction(
      ([id, before]) => document.querySelector(`#queue-rows tr[data-call="${id}"] td.wait`)?.textContent !== before,
      [CALL, first],
      { timeout: 5000 },
    );
    await page.locator(`#queue-rows tr[data-call="${CALL}"]`).waitFor();
    await screenshot(page2, '06-second-operator-sees-the-call-waiting');
  });

  test('going available brings the offer with its screen-pop', async () => {
    await page.keyboard.press('Alt+1');
    const sent = await frames.sentMessage('presence', { where: (m) => m.state === 'available' });
    assert.equal(sent.state, 'available');
    const offer = await frames.gotMessage('offer', { timeout: 20_000 });
    assert.equal(offer.pop.call_id, CALL);
    const section = page.locator('#offer');
    await section.waitFor({ state: 'visible' });
    const pop = page.locator('#offer-pop');
    assert.match(await pop.textContent(), /Italiano/);
    assert.match(await pop.textContent(), /Casa/);
    assert.match(await pop.textContent(), /Como/);
    assert.match(await pop.textContent(), /22100/);
    const masked = await pop.locator('dd').nth(4).textContent();
    assert.ok(!masked.includes('7654321'), `the number is masked: ${masked}`);
    assert.ok(await pop.locator('.pop-path li').count() >= 3, 'the path through the menu is shown');
    assert.match(await pop.textContent(), /Prima chiamata da questo numero/);
    assert.match(await page.locator('#offer-countdown').textContent(), /Scade tra \d+ s/);
    await screenshot(page, '07-offer-with-screen-pop');
  });

  test('accepting opens the call view; the other operator sees the queue empty', async () => {
    await page.keyboard.press('a');
    const accept = await frames.sentMessage('accept');
    assert.ok(accept.offer_id);
    await frames.gotMessage('call', { where: (m) => m.call_id === CALL && m.state === 'connected' });
    await page.locator('#call').waitFor({ state: 'visible' });
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'search-q', 'the search has the focus');
    // The filters are preset from the call: its area, its language, near its CAP.
    assert.equal(await page.locator('#area-chips .chip[aria-pressed="true"]').getAttribute('data-area'), 'casa');
    const { pop } = await frames.gotMessage('call', { where: (m) => m.call_id === CALL });
    const near = pop.cap ?? `${pop.lat},${pop.lon}`;
    assert.equal(await page.locator('#search-near').inputValue(), near);
    const first = await frames.sentMessage('search');
    assert.equal(first.area, 'casa');
    assert.equal(first.near, near);
    await page2.locator(`#queue-rows tr[data-call="${CALL}"]`).waitFor({ state: 'detached' });
    await page2.locator('#queue-empty').waitFor({ state: 'visible' });
    await screenshot(page, '08-call-view');
    await screenshot(page2, '09-second-operator-queue-empty');
  });

  test('searching as you type sends increasing qseqs and shows the newest results', async () => {
    await frames.gotMessage('search_results');
    const before = frames.sent.length;
    await page.locator('#search-q').pressSequentially('sportello casa', { delay: 40 });
    const searches = () => frames.sent.slice(before).filter((f) => f.msg.type === 'search').map((f) => f.msg);
    const last = await frames.sentMessage('search', { where: (m) => m.q === 'sportello casa', after: before });
    const qseqs = searches().map((m) => m.qseq);
    assert.deepEqual([...qseqs].sort((a, b) => a - b), qseqs, 'qseq only increases');
    assert.ok(qseqs.length < 'sportello casa'.length, `typing is debounced (${qseqs.length} searches for 14 keys)`);
    const results = await frames.gotMessage('search_results', { where: (m) => m.qseq === last.qseq });
    await page.waitForFunction(() => document.querySelectorAll('#results li.result').length > 0 || /Nessun/.test(document.querySelector('#results-summary').textContent));
    if (results.results.length === 0) {
      // Nothing in the demo for these words: widen to the caller's area alone.
      await page.locator('#search-q').fill('');
      await page.locator('#search-q').press('Backspace');
    }
    await page.locator('#results li.result').first().waitFor();
    const card = page.locator('#results li.result').first();
    assert.match(await card.textContent(), /Oggi|chiuso/);
    assert.match(await card.locator('a[href^="https://www.integrazionemigranti.gov.it"]').getAttribute('href'), /\?q=/);

    // The open-now and radius chips narrow the search.
    const beforeChips = frames.sent.length;
    await page.locator('#radius-chips .chip[data-radius="25"]').click();
    const radius = await frames.sentMessage('search', { where: (m) => m.radius_km === 25, after: beforeChips });
    assert.ok(radius.near, 'a radius goes with the place');
    await frames.gotMessage('search_results', { where: (m) => m.qseq === radius.qseq });
    await screenshot(page, '10-search-results');
  });

  test('a referral is added from a result and listed', async () => {
    const card = page.locator('#results li.result').first();
    const name = (await card.locator('h4').textContent()).trim();
    await card.getByRole('button', { name: new RegExp(`Indica al chiamante`) }).click();
    const sent = await frames.sentMessage('referral');
    assert.equal(sent.add, true);
    assert.equal(sent.call_id, CALL);
    const saved = await frames.gotMessage('saved', { where: (m) => m.ref === sent.ref });
    assert.equal(saved.what, 'referral');
    await page.locator('#referrals li', { hasText: name }).waitFor();
    assert.equal(await card.getAttribute('class'), 'result given');
    await screenshot(page, '11-referral-added');
  });

  test('notes autosave and survive reloads, saved or not', async () => {
    await page.keyboard.press('Escape');
    await page.keyboard.press('n');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'notes');
    await page.keyboard.type(NOTE_1);
    const sent = await frames.sentMessage('note', { where: (m) => m.text === NOTE_1 });
    await frames.gotMessage('saved', { where: (m) => m.ref === sent.ref });
    await page.locator('#notes-status', { hasText: 'Salvato alle' }).waitFor();
    await screenshot(page, '12-note-saved');

    await page.reload();
    await page.locator('#call').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#notes').inputValue(), NOTE_1, 'the saved note is back after a reload');

    // More text, and a reload before the autosave fires: the page keeps it and sends it later.
    await page.locator('#notes').focus();
    await page.keyboard.press('End');
    await page.keyboard.type(NOTE_2, { delay: 0 });
    await page.reload();
    await page.locator('#call').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#notes').inputValue(), NOTE_1 + NOTE_2, 'the text typed just before the reload is there');
    // It reaches the server either as the page unloads or, restored from localStorage, after the
    // reload; the next call's screen-pop shows what the server kept (checked below).
    await page.waitForFunction((text) => Object.entries(localStorage).some(([k, v]) => k.startsWith('helpline.note.')
      && JSON.parse(v).text === text && JSON.parse(v).saved), NOTE_1 + NOTE_2);
    // The referral made before the reloads is still listed.
    assert.ok(await page.locator('#referrals li').count() >= 1, 'referrals survive a reload');
  });

  test('a disposition is chosen from the configured list', async () => {
    const options = await page.locator('#disposition option:not([disabled])').evaluateAll((os) => os.map((o) => o.value));
    assert.ok(options.length > 0, 'the configuration lists dispositions');
    await page.locator('#disposition').selectOption(options[0]);
    const sent = await frames.sentMessage('disposition');
    assert.equal(sent.code, options[0]);
    await frames.gotMessage('saved', { where: (m) => m.ref === sent.ref });
    await page.getByText('Esito salvato').waitFor();
    await screenshot(page, '13-disposition');
  });

  test('ending the call starts the wrap-up, and ready ends it', async () => {
    await page.locator('body').click({ position: { x: 5, y: 900 } });
    await page.keyboard.press('Alt+E');
    await frames.sentMessage('end_call', { where: (m) => m.call_id === CALL });
    const wrap = await frames.gotMessage('wrap_up', { where: (m) => m.call_id === CALL });
    assert.ok(Date.parse(wrap.until) > Date.now() - 5000);
    await page.locator('#wrapup').waitFor({ state: 'visible' });
    assert.match(await page.locator('#wrapup-countdown').textContent(), /Torni disponibile tra \d+ s/);
    assert.ok(await page.locator('#notes').isVisible(), 'notes stay open during wrap-up');
    await screenshot(page, '14-wrap-up');
    await page.locator('#wrapup-ready').focus();
    await page.keyboard.press('r');
    await frames.sentMessage('ready');
    await frames.gotMessage('presence', { where: (m) => m.operator?.name === 'giulia' && m.operator.state === 'available' });
    await page.locator('#idle').waitFor({ state: 'visible' });
    await page.getByText('Sei disponibile').waitFor();
    await screenshot(page, '15-ready-again');
  });

  test('a reconnect replays what the page missed', async () => {
    // Paused, so the next call waits in the queue instead of being offered.
    await page.keyboard.press('Alt+2');
    await frames.gotMessage('presence', { where: (m) => m.operator?.name === 'giulia' && m.operator.state === 'paused' });
    const seenSeq = frames.lastSeq();
    const sockets = frames.sockets;
    await ctx1.setOffline(true);
    await page.locator('#conn[data-state="offline"]').waitFor();
    await screenshot(page, '16-offline');

    // While the page is away, a second call from the same number enters the queue.
    await server.placeCall('browser-call-2', { from: NUMBER, areaDigit: '3', cap: '22100' });
    await frames2.gotMessage('queue', { where: (m) => m.calls.some((c) => c.call_id === 'browser-call-2') });

    await ctx1.setOffline(false);
    const hello = await frames.waitFor('sent', (m, f) => m.type === 'hello' && f.socket > sockets, { what: 'hello on a new socket' });
    assert.equal(hello.last_seq, seenSeq, 'the page asks for what came after the last seq it saw');
    const replayed = await frames.waitFor('received',
      (m, f) => f.socket > sockets && m.type === 'queue' && m.seq > seenSeq && m.calls.some((c) => c.call_id === 'browser-call-2'),
      { what: 'the missed queue message, replayed' });
    assert.ok(replayed.seq > seenSeq);
    await page.locator('#queue-rows tr[data-call="browser-call-2"]').waitFor();
    await page.locator('#conn[data-state="online"]').waitFor();
    const stored = await page.evaluate(() => Object.entries(sessionStorage).find(([k]) => k.startsWith('helpline.last_seq'))?.[1]);
    assert.ok(Number(stored) >= replayed.seq, 'the last seq is kept in sessionStorage');
    await screenshot(page, '17-reconnected');
  });

  test('the second call shows the first one and its note in the screen-pop', async () => {
    await page.keyboard.press('Alt+1');
    const offer = await frames.gotMessage('offer', { where: (m) => m.pop?.call_id === 'browser-call-2', timeout: 20_000 });
    assert.ok(offer.pop.previous.calls >= 1, 'the earlier call from this number is counted');
    await page.locator('#offer').waitFor({ state: 'visible' });
    const pop = page.locator('#offer-pop .pop-previous');
    assert.ok((await pop.textContent()).includes(NOTE_1 + NOTE_2), 'the whole note, as typed before the reload');
    await screenshot(page, '18-offer-with-previous-call');
    await page.keyboard.press('d');
    await frames.sentMessage('decline');
    await page.locator('#offer').waitFor({ state: 'hidden' });
  });

  test('sign out everywhere ends the session', async () => {
    page.once('dialog', (d) => d.accept());
    await page.getByRole('button', { name: 'Esci da tutti i dispositivi' }).click();
    await page.locator('#signin').waitFor({ state: 'visible' });
    const r = await page.evaluate(async () => (await fetch('/api/session')).status);
    assert.equal(r, 401);
  });

  test('no errors in the pages’ consoles', () => {
    const unexpected = pageErrors.filter((e) => !/Failed to load resource|WebSocket connection/.test(e));
    assert.deepEqual(unexpected, []);
  });
});

describe('the page’s texts', () => {
  test('Italian and English have the same keys, and every key in the page exists', async () => {
    const { dictionaries } = await import('../../console/assets/i18n.js');
    const it = Object.keys(dictionaries.it).sort();
    const en = Object.keys(dictionaries.en).sort();
    assert.deepEqual(en, it);
    const html = readFileSync(join(REPO, 'console/assets/console.html'), 'utf8');
    const used = [...html.matchAll(/data-i18n(?:-[a-z-]+)?="([^"]+)"/g)].map((m) => m[1]);
    assert.ok(used.length > 30);
    for (const key of used) assert.ok(it.includes(key), `${key} is used by console.html but has no text`);
    const js = readFileSync(join(REPO, 'console/assets/console.js'), 'utf8');
    for (const [, key] of js.matchAll(/\bt\('([a-z_.]+)'/g)) assert.ok(it.includes(key), `${key} is used by console.js but has no text`);
  });
});
