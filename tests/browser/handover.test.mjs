// The blind hand-over to a queue (docs/operators.md, "Handing the caller over to another queue"):
// a real SIP caller plays 440 Hz; the Italian operator's page (its own Chromium, 1 kHz) answers in
// the browser, then presses "Passa alla coda" with the keyboard (Alt+Q), picks the French queue
// and leaves (wrap-up). The caller hears the hold audio again (425 Hz) and no longer the operator;
// a French operator (another Chromium, 1.6 kHz), signed in only then, is offered the caller,
// answers in the browser and hears the caller's 440 Hz, and the caller hears them. The hand-over
// is in the call's timeline. With HELPLINE_TEST_DATABASE_URL set, the Italian operator's page is
// on a second node sharing the PostgreSQL database (the French operator's on the call's node): the
// hand-over crosses through the phone relay.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller, goertzel, ulawDecode as ulaw } from './lib/sipcaller.mjs';
import { callerTonesBetween as callerTones, hears, tonesOn } from './lib/audio.mjs';
import { goOnline, screenshot, signIn, sipAddr, socketUp } from './lib/server.mjs';
import { Scene, callerReachesPage, endCall, latestCallRecord, newPage, phoneConnected } from './lib/scene.mjs';

/** The first of 10 packets in a row after `since` where `freq` dominates (200 ms of a tone, not a
 * syllable of speech), waited for up to `ms`. */
async function firstToneWith(caller, since, freq, ms) {
  const until = Date.now() + ms;
  for (;;) {
    const packets = caller.received.filter((p) => p.at >= since && p.pt === 0);
    let run = 0;
    for (const p of packets) {
      run = goertzel([...p.payload].map(ulaw), 8000, freq) > 0.5 ? run + 1 : 0;
      if (run === 10) return p;
    }
    if (Date.now() > until) return null;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe('the blind hand-over to a queue', () => {
  let server;
  /** The first operator's node: another one on PostgreSQL, the same one on SQLite. */
  let server2;
  let operatorBrowser;
  let frenchBrowser;
  const scene = new Scene('helpline-handover-');

  before(async () => {
    ({ server, server2 } = await scene.startNodes());
    operatorBrowser = await scene.toneBrowser('op-1khz.wav', 1000);
    frenchBrowser = await scene.toneBrowser('fr-1600.wav', 1600);
  });

  after(() => scene.close());

  test('the caller goes back on hold in the French queue and reaches its operator', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const bruno = server.addUser({ name: 'bruno', languages: ['fr'] });
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    const { ctx: frCtx, page: fr } = await newPage(frenchBrowser);
    await goOnline(op, server2, anna);
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await callerReachesPage(caller, op);
      await new Promise((r) => setTimeout(r, 1000));
      const talking = Date.now();
      hears('the operator (before)', await tonesOn(op, 'phone-audio', [440, 1000, 1600]), [440], [1000, 1600]);
      await new Promise((r) => setTimeout(r, Math.max(0, talking + 1500 - Date.now())));
      hears('the caller (before)', callerTones(caller, talking, talking + 1500, [440, 1000]), [1000], [440]);

      // "Passa alla coda" with the keyboard: the French queue, any area.
      await op.keyboard.press('Alt+Q');
      await op.locator('#handover-picker').waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await op.evaluate(() => document.activeElement?.id), 'handover-language');
      await op.locator('#handover-language').selectOption('fr');
      await screenshot(op, 'handover-1-picker');
      await op.locator('#handover-go').focus();
      const handedAt = Date.now();
      await op.keyboard.press('Enter');
      await op.waitForFunction(() => !document.getElementById('wrapup')?.hidden, null, { timeout: 10_000 });

      // Back on hold: the hold audio (after the French queue's welcome), never the operator again.
      const hold = await firstToneWith(caller, handedAt, 425, 20_000);
      assert.ok(hold, 'the caller hears the hold audio again');
      if (process.env.TEST_LOG) console.log(`hold audio ${hold.at - handedAt} ms after the hand-over`);
      await new Promise((r) => setTimeout(r, Math.max(0, handedAt + 5000 - Date.now())));
      const held = callerTones(caller, handedAt + 500, handedAt + 5000, [425, 1000]);
      if (process.env.TEST_LOG) console.log(`on hold: ${JSON.stringify(held)}`);
      assert.ok(held.p1000 < 0.05, `the caller no longer hears the operator (1 kHz share ${held.p1000.toFixed(3)})`);
      assert.ok(!caller.byeReceived, 'the caller stayed on the line');

      // The French operator is offered the caller and answers in the browser.
      // Available, and offered the caller at once (so not waiting to see "available").
      await signIn(fr, server, bruno);
      await socketUp(fr);
      await fr.keyboard.press('Alt+1');
      await fr.locator('#offer').waitFor({ state: 'visible', timeout: 30_000 });
      const offerAt = Date.now();
      await fr.locator('#offer-accept').focus();
      await fr.keyboard.press('Enter');
      await phoneConnected(fr);
      await new Promise((r) => setTimeout(r, 1000));
      const landed = Date.now();
      hears('the French operator', await tonesOn(fr, 'phone-audio', [440, 1000, 1600]), [440], [1000, 1600]);
      await new Promise((r) => setTimeout(r, Math.max(0, landed + 1500 - Date.now())));
      hears('the caller (with the French operator)', callerTones(caller, landed, landed + 1500, [440, 1000, 1600]), [1600], [440, 1000]);
      if (process.env.TEST_LOG) console.log(`offered ${offerAt - handedAt} ms after the hand-over`);
      await screenshot(fr, 'handover-2-french-operator');

      await endCall(fr, caller);

      const record = await latestCallRecord(fr);
      assert.ok(record, "the call's record");
      const steps = record.timeline.filter((e) => e.type === 'mediation').map((e) => `${e.user}:${e.action}:${e.detail}`);
      assert.deepEqual(steps, ['anna:hand_over:fr']);
      assert.ok(record.timeline.some((e) => e.type === 'step' && e.event_kind === 'handed_over'), 'the engine step');
    } finally {
      caller.close();
      await frCtx.close();
      await opCtx.close();
    }
  });
});
