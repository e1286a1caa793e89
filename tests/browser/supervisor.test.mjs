// The supervisors' page in real headless Chromium against the real `helpline serve`: calls placed
// through the signed JSON webhook; a supervisor signs in, watches the wallboard show the waiting
// caller, opens the call log, filters it, opens a call's timeline, reads the KPIs and their
// charts, and switches to English. Screenshots go to tests/browser/screenshots/supervisor-*.png.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { screenshot } from './lib/server.mjs';
import { Scene, watchedPage } from './lib/scene.mjs';

describe('the supervisors page', () => {
  let server;
  let page;
  let sara;
  const pageErrors = [];
  const scene = new Scene('helpline-supervisor-');

  before(async () => {
    server = await scene.startServer();
    sara = server.addUser({ name: 'sara', role: 'supervisor' });
    // Three callers: one still waiting, one who gave up in the queue, one who hung up in the menu.
    await server.placeCall('sup-waiting', { from: '+39 333 111 2233' });
    await server.placeCall('sup-abandoned', { from: '+33 6 12 34 56 78', areaDigit: '2', cap: '00184' });
    await server.callEvent('sup-abandoned', { type: 'call.ended' });
    await server.callEvent('sup-menu', { type: 'call.started', from: '+44 7700 900123', to: '803001' });
    await server.callEvent('sup-menu', { type: 'call.ended' });
    const browser = await scene.launchBrowser();
    // (Chromium logs the signed-out page's 401 from GET /api/session and the favicon's 404 as
    // "Failed to load resource"; those are expected answers, not page errors.)
    ({ page } = await watchedPage(browser, { width: 1400, height: 1000 }, pageErrors, /^Failed to load resource/));
  });

  after(() => scene.close());

  test('a supervisor signs in and the wallboard shows the waiting caller', async () => {
    await page.goto(`${server.url}/supervisor`);
    await page.locator('#signin').waitFor({ state: 'visible' });
    assert.equal(await page.locator('html').getAttribute('lang'), 'it', 'Italian by default');
    await page.getByLabel('Nome utente').fill(sara.name);
    await page.getByLabel('Password', { exact: true }).fill(sara.password);
    await page.getByRole('button', { name: 'Accedi' }).click();
    await page.locator('#wallboard').waitFor({ state: 'visible' });
    // The wallboard's first message arrives over the websocket.
    await page.locator('#wb-queue').filter({ hasText: '1' }).waitFor();
    assert.equal(await page.locator('#wb-calls').textContent(), '3');
    assert.match(await page.locator('#wb-queue-table tbody').textContent(), /it\s*casa\s*1/);
    await screenshot(page, 'supervisor-01-wallboard');
  });

  test('the call log lists the calls, filters them and opens a timeline', async () => {
    await page.getByRole('button', { name: 'Registro chiamate' }).click();
    await page.locator('#log-table tbody tr').nth(2).waitFor();
    assert.equal(await page.locator('#log-table tbody tr').count(), 3);
    assert.doesNotMatch(await page.locator('#log-table').textContent(), /3331112233|612345678/, 'numbers only masked');
    await screenshot(page, 'supervisor-02-log');

    await page.locator('#log-filter select[name=outcome]').selectOption('hung_up_in_queue');
    await page.getByRole('button', { name: 'Filtra' }).first().click();
    // The unfiltered table already has that row: wait for the filtered answer to replace it.
    await page.waitForFunction(() => document.querySelectorAll('#log-table tbody tr').length === 1);
    await page.locator('#log-table tbody tr').filter({ hasText: 'abbandonata in coda' }).waitFor();
    assert.equal(await page.locator('#log-table tbody tr').count(), 1);
    assert.match(await page.locator('#log-csv').getAttribute('href'), /outcome=hung_up_in_queue/);

    await page.locator('#log-table tbody tr').first().click();
    await page.locator('#call').waitFor({ state: 'visible' });
    assert.equal(await page.locator('#call-id').textContent(), 'sup-abandoned');
    const timeline = await page.locator('#call-timeline').textContent();
    assert.match(timeline, /tasti 00184/, 'the CAP pressed');
    assert.match(timeline, /welcome/, 'the prompts played');
    await screenshot(page, 'supervisor-03-timeline');
  });

  test('the KPIs show their definitions and charts; the page switches to English', async () => {
    await page.getByRole('button', { name: 'Indicatori' }).click();
    await page.locator('#kpi-table tbody tr').last().waitFor();
    assert.match(await page.locator('#kpi-definitions').textContent(), /entro 20 secondi/);
    // The service level of each language side by side, the lowest first.
    await page.locator('#kpi-languages tbody tr').first().waitFor();
    const levels = await page.locator('#kpi-languages tbody tr meter').evaluateAll((ms) => ms.map((m) => Number(m.value)));
    assert.ok(levels.length >= 1, 'a row per language');
    assert.deepEqual(levels, [...levels].sort((a, b) => a - b), `lowest service level first: ${levels}`);
    await page.locator('#chart-hours svg').waitFor();
    const drawn = await page.locator('#chart-hours svg rect.bar').evaluateAll((bars) => bars.filter((b) => Number(b.getAttribute('height')) > 0).length);
    assert.ok(drawn >= 1, 'the hours with calls have bars');
    assert.ok(await page.locator('#chart-sl svg').count(), 'service-level chart drawn');
    // Every axis reads as distinct values (a quiet day's waits once read "1, 1, 1, 0, 0").
    for (const chart of ['#chart-hours', '#chart-sl', '#chart-waits']) {
      await page.locator(`${chart} svg`).waitFor();
      for (const axis of ['x', 'y']) {
        const ticks = await page.locator(`${chart} svg text.tick.${axis}`).allTextContents();
        assert.ok(ticks.length >= (axis === 'y' ? 2 : 1), `${chart}: the ${axis} axis has tick labels: ${ticks}`);
        assert.equal(new Set(ticks).size, ticks.length, `${chart}: the ${axis} axis's tick labels differ: ${ticks}`);
      }
    }
    await screenshot(page, 'supervisor-04-kpis');

    await page.getByRole('button', { name: 'English' }).click();
    await page.getByRole('button', { name: 'Call log' }).waitFor();
    assert.equal(await page.locator('html').getAttribute('lang'), 'en');
    assert.match(await page.locator('#kpi-definitions').textContent(), /within 20 seconds/);
    await screenshot(page, 'supervisor-05-kpis-en');
    assert.deepEqual(pageErrors, [], 'no errors on the page');
  });
});
