// Keeping the directory true, in real headless Chromium against the real `helpline serve`: an
// operator flags a search result during a call ("Segnala un errore") and another operator sees
// it reported; an organisation editor edits a phone on `/directory` (a latitude of 100 is refused
// with the import's words next to the field) and finds nothing to click on another
// organisation's service (and a 403 from the API); an editor, on a second node sharing the
// PostgreSQL database (HELPLINE_TEST_DATABASE_URL; without it one SQLite node), accepts the
// proposal, and the operator's next search shows the new phone within the follower's interval;
// a restore brings the old phone back. Screenshots go to tests/browser/screenshots/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { REPO, screenshot, signIn } from './lib/server.mjs';
import { Scene, watchedPage } from './lib/scene.mjs';

const MILANO = '9a1f6a52-0001-4c1e-9d6f-000000000001';
const OLD_PHONE = '+39 02 8846 1234';
const NEW_PHONE = '+39 02 0000 1111';
const CALL = 'browser-directory-call-1';
/** Two of the follower's intervals (2 s), and the debug build's index rebuild. */
const FOLLOW_MS = 15_000;

describe('keeping the directory true', () => {
  let server;
  let server2;
  let giulia;
  let marco;
  let eva;
  let milano;
  let op;
  let op2;
  let orgPage;
  let edPage;
  const pageErrors = [];
  const scene = new Scene('helpline-directory-');

  before(async () => {
    let shared;
    ({ server, server2, shared } = await scene.startNodes());
    if (!shared) console.log('# HELPLINE_TEST_DATABASE_URL is unset: one SQLite node');
    server.importDirectory(join(REPO, 'tests/fixtures/directory/good'));
    giulia = server.addUser({ name: 'giulia', languages: ['it'], areas: ['casa', 'mediazione'], sipTarget: 'sip:giulia@pbx.example.org' });
    marco = server.addUser({ name: 'marco', languages: ['it'], areas: ['mediazione'] });
    eva = server.addUser({ name: 'eva', role: 'editor', languages: [] });
    milano = server.addUser({ name: 'milano', role: 'org_editor', organization: MILANO, languages: [] });
    const browser = await scene.launchBrowser();
    const pages = [];
    for (let i = 0; i < 4; i++) pages.push((await watchedPage(browser, { width: 1400, height: 950 }, pageErrors, /status of 4\d\d/)).page);
    [op, op2, orgPage, edPage] = pages;
  });

  after(() => scene.close());

  /** Searches `q` (again and again, up to `timeout`) until the first card satisfies `ok`. */
  async function searchUntil(page, q, ok, timeout = FOLLOW_MS) {
    const deadline = Date.now() + timeout;
    let text = '';
    for (;;) {
      await page.locator('#search-q').fill('');
      await page.locator('#search-q').fill(q);
      const card = page.locator('#results li.result', { hasText: 'Sportello mediazione interculturale' }).first();
      try {
        await card.waitFor({ timeout: 3000 });
        text = await card.textContent();
        if (await ok(card)) return card;
      } catch {
        // No card yet (the index is being rebuilt): search again.
      }
      if (Date.now() > deadline) {
        await screenshot(page, 'directory-failed-search');
        assert.fail(`no result for ${q} satisfied the check in ${timeout} ms; last: ${text}; summary: ${await page.locator('#results-summary').textContent()}`);
      }
      await page.waitForTimeout(500);
    }
  }

  /** Clears the call's preset filters (its area and place), so that any service can be found. */
  async function clearFilters(page) {
    await page.locator('#area-chips .chip', { hasText: /Tutti gli ambiti/ }).click();
    const near = page.locator('#search-near');
    if (await near.count()) await near.fill('');
  }

  test('an operator flags a result during a call and another operator sees it reported', async () => {
    await signIn(op, server, giulia);
    await signIn(op2, server2, marco);
    await server.placeCall(CALL, { areaDigit: '3', cap: '22100' });
    await op.keyboard.press('Alt+1');
    await op.locator('#offer').waitFor({ state: 'visible', timeout: 20_000 });
    await op.keyboard.press('a');
    await op.locator('#call').waitFor({ state: 'visible' });
    await clearFilters(op);
    const card = await searchUntil(op, 'sportello mediazione', async (c) => /8846 1234/.test(await c.textContent()));
    await card.getByRole('button', { name: /Segnala un errore/ }).click();
    const form = card.locator('form.flag-form');
    await form.locator('select.flag-reason').selectOption('phone_wrong');
    await form.locator('textarea.flag-note').fill('Il numero squilla a vuoto.');
    await screenshot(op, 'directory-01-flag-form');
    const posted = op.waitForResponse((r) => r.url().includes('/flags') && r.request().method() === 'POST');
    await form.getByRole('button', { name: 'Invia la segnalazione' }).click();
    const response = await posted;
    assert.equal(response.status(), 201);
    const flag = await response.json();
    assert.equal(flag.call_id, CALL, 'the flag is tied to the call');
    assert.equal(flag.reason, 'phone_wrong');
    await card.locator('.reported').waitFor();
    await screenshot(op, 'directory-02-reported');

    // Another operator (on the other node when there are two; not in a call, so through the
    // search API their page uses) finds it reported, within the follower's interval.
    await op2.waitForFunction(async () => {
      const r = await fetch('/api/services/search?q=sportello%20mediazione');
      const page = await r.json();
      return page.contents?.some((s) => s.name === 'Sportello mediazione interculturale' && s.reported === true);
    }, null, { timeout: FOLLOW_MS, polling: 500 });
  });

  test('an organisation editor edits a phone, with the import\'s errors per field, and cannot touch another organisation\'s service', async () => {
    await orgPage.goto(`${server.url}/directory`);
    const csp = (await orgPage.request.get(`${server.url}/directory`)).headers()['content-security-policy'];
    assert.match(csp, /script-src 'self'/);
    await orgPage.getByLabel('Nome utente').fill(milano.name);
    await orgPage.getByLabel('Password', { exact: true }).fill(milano.password);
    await orgPage.getByRole('button', { name: 'Accedi' }).click();
    await orgPage.locator('#work').waitFor({ state: 'visible' });

    // Another organisation's service: shown, with nothing to click.
    await orgPage.locator('#services li', { hasText: 'Corsi di italiano per adulti' }).getByRole('button').click();
    await orgPage.locator('#service-readonly').waitFor({ state: 'visible' });
    assert.equal(await orgPage.locator('#service button:visible').count(), 0, 'no button on a service they may not change');
    assert.equal(await orgPage.locator('#service input:visible:not([readonly])').count(), 0, 'every field read-only');
    await screenshot(orgPage, 'directory-04-other-organisation-read-only');
    const forbidden = await orgPage.evaluate(async () => {
      const s = await (await fetch('/api/session')).json();
      const id = '9a1f6a52-0002-4c1e-9d6f-000000000002';
      const view = await (await fetch(`/api/directory/services/${id}`)).json();
      const r = await fetch(`/api/directory/services/${id}`, {
        method: 'PUT', headers: { 'content-type': 'application/json', 'x-csrf-token': s.csrf_token },
        body: JSON.stringify({ record: view.record, reason: 'not mine' }),
      });
      return r.status;
    });
    assert.equal(forbidden, 403);

    // Their own service: a latitude of 100 is refused next to the field, in the import's words.
    await orgPage.locator('#services li', { hasText: 'Sportello mediazione interculturale' }).getByRole('button').first().click();
    await orgPage.locator('#service-readonly').waitFor({ state: 'hidden' });
    await orgPage.locator('[data-field="locations[0].latitude"]').fill('100');
    await orgPage.getByRole('button', { name: 'Salva' }).click();
    const error = orgPage.locator('.field-error[data-error-for="locations[0].latitude"]');
    await error.waitFor();
    assert.equal(await error.textContent(), '"100" is out of range -90..90');
    await screenshot(orgPage, 'directory-05-latitude-refused');
    await orgPage.locator('[data-field="locations[0].latitude"]').fill('45.4637');
    await orgPage.locator('[data-field="phones[0].number"]').fill(NEW_PHONE);
    await orgPage.locator('#reason').fill('Nuovo centralino');
    await orgPage.getByRole('button', { name: 'Salva' }).click();
    await orgPage.getByText('Proposta inviata: un redattore la rivedrà.').waitFor();
    await screenshot(orgPage, 'directory-06-proposal-sent');
    // A proposal only: the operator still gets the old number.
    await searchUntil(op, 'sportello mediazione', async (c) => /8846 1234/.test(await c.textContent()), 3000);
  });

  test('an editor on the other node accepts, and the operator\'s next search shows the new phone', async () => {
    await edPage.goto(`${server2.url}/directory`);
    await edPage.getByLabel('Nome utente').fill(eva.name);
    await edPage.getByLabel('Password', { exact: true }).fill(eva.password);
    await edPage.getByRole('button', { name: 'Accedi' }).click();
    const proposal = edPage.locator('#proposals li', { hasText: 'Sportello mediazione interculturale' });
    await proposal.waitFor();
    assert.match(await proposal.textContent(), /milano/);
    assert.match(await proposal.locator('.diff').textContent(), /0000 1111/);
    await edPage.locator('#flags li', { hasText: 'Il numero squilla a vuoto.' }).waitFor();
    await screenshot(edPage, 'directory-07-editor-review');
    await proposal.getByRole('button', { name: 'Accetta' }).click();
    await edPage.locator('#proposals-empty').waitFor({ state: 'visible' });
    const card = await searchUntil(op, 'sportello mediazione', async (c) => (await c.textContent()).includes(NEW_PHONE));
    assert.ok((await card.textContent()).includes(NEW_PHONE));
    await screenshot(op, 'directory-08-operator-sees-the-new-phone');
  });

  test('a restore brings the old phone back, and resolving the flag clears "reported"', async () => {
    await edPage.locator('#services li', { hasText: 'Sportello mediazione interculturale' }).getByRole('button').first().click();
    await edPage.locator('#history li .restore').first().waitFor();
    assert.equal(await edPage.locator('[data-field="phones[0].number"]').inputValue(), NEW_PHONE);
    await edPage.locator('#history li .restore').first().click();
    await edPage.getByText('Versione ripristinata.').waitFor();
    await edPage.waitForFunction((v) => document.querySelector('[data-field="phones[0].number"]')?.value === v, OLD_PHONE);
    await screenshot(edPage, 'directory-09-restored');
    await edPage.locator('#flags li', { hasText: 'Il numero squilla a vuoto.' }).getByRole('button', { name: 'Risolta' }).click();
    await edPage.locator('#flags-empty').waitFor({ state: 'visible' });
    await searchUntil(op, 'sportello mediazione', async (c) =>
      (await c.textContent()).includes(OLD_PHONE) && (await c.locator('.reported').count()) === 0);
    await screenshot(op, 'directory-10-old-phone-back');
    assert.deepEqual(pageErrors, []);
  });
});
