// The warm transfer (docs/operators.md, "Consulting a colleague and handing the call over"): a real
// SIP caller plays 440 Hz, the operator's page (its own Chromium, 1 kHz) answers in the browser,
// presses "Consulta un collega" with the keyboard (Alt+K) and asks a colleague, whose page
// (another Chromium, 1.6 kHz) joins the consultation. Meanwhile the caller hears the hold audio
// (425 Hz) and neither of them, and the two operators hear each other and not the caller. Then
// the operator hands the call over: the caller lands on the colleague — their RTP never stops for
// longer than a hold-audio packet's spacing allows, and the colleague's tone arrives within a
// second of the hand-over — and the colleague ends the call. Before that, a first consultation
// ends with "Torna al chiamante" / "Back to the caller": the colleague leaves, the caller comes off
// hold and talks to the operator again. The steps are in the timeline. With
// HELPLINE_TEST_DATABASE_URL set, the operator's page is on a second node sharing the PostgreSQL
// database (the colleague's on the call's node): the consultation and the hand-over cross through
// the phone relay.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller, goertzel, ulawDecode as ulaw } from './lib/sipcaller.mjs';
import { callerTonesBetween as callerTones, hears, tonesOn } from './lib/audio.mjs';
import { goOnline, screenshot, sipAddr } from './lib/server.mjs';
import { Scene, callerReachesPage, endCall, latestCallRecord, newPage, phoneConnected } from './lib/scene.mjs';

describe('the warm transfer', () => {
  let server;
  /** The first operator's node: another one on PostgreSQL, the same one on SQLite. */
  let server2;
  let operatorBrowser;
  let colleagueBrowser;
  const scene = new Scene('helpline-transfer-');

  before(async () => {
    ({ server, server2 } = await scene.startNodes());
    operatorBrowser = await scene.toneBrowser('op-1khz.wav', 1000);
    colleagueBrowser = await scene.toneBrowser('col-1600.wav', 1600);
  });

  after(() => scene.close());

  test('consult with the caller on hold, then hand over: the caller lands on the colleague without a gap', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const bruno = server.addUser({ name: 'bruno', languages: ['fr', 'it'], areas: ['lavoro'] });
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    const { ctx: colCtx, page: col } = await newPage(colleagueBrowser);
    await goOnline(op, server2, anna);
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await callerReachesPage(caller, op);
      // Signed in once anna has the call (the ACD would offer it to bruno too).
      await goOnline(col, server, bruno);

      /** "Consulta un collega" with the keyboard (the caller goes on hold); bruno joins. */
      const consultBruno = async () => {
        await op.keyboard.press('Alt+K');
        const invite = op.getByRole('button', { name: 'Invita bruno' });
        await invite.waitFor({ state: 'visible', timeout: 10_000 });
        await op.keyboard.press('Enter');
        await op.waitForFunction(() => document.getElementById('phone-hold')?.getAttribute('aria-pressed') === 'true', null, { timeout: 10_000 });
        const join = col.getByRole('button', { name: 'Partecipa al consulto' });
        await join.waitFor({ state: 'visible', timeout: 15_000 });
        assert.match(await col.locator('#mediation-offer-from').textContent(), /anna/);
        await join.focus();
        await col.keyboard.press('Enter');
        await phoneConnected(col);
        await op.locator('#call-transfer').waitFor({ state: 'visible', timeout: 10_000 });
        await new Promise((r) => setTimeout(r, 500));
      };

      // A first consultation, then back to the caller: bruno leaves, the caller talks to anna again.
      await consultBruno();
      await op.locator('#call-return').focus();
      await op.keyboard.press('Enter');
      await op.waitForFunction(() => document.getElementById('phone-hold')?.getAttribute('aria-pressed') === 'false', null, { timeout: 10_000 });
      await col.waitForFunction(() => !document.getElementById('wrapup')?.hidden, null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 700));
      const back = Date.now();
      hears('the operator (back to the caller)', await tonesOn(op, 'phone-audio', [440, 1000, 1600]), [440], [1000, 1600]);
      await new Promise((r) => setTimeout(r, Math.max(0, back + 1500 - Date.now())));
      hears('the caller (back with the operator)', callerTones(caller, back, back + 1500, [440, 1000, 1600]), [1000], [440, 1600]);
      // bruno is available again after his wrap-up.
      await col.locator('#wrapup-ready').click();
      await col.waitForFunction(() => document.querySelector('input[name="presence"]:checked')?.value === 'available', null, { timeout: 10_000 });

      // The second consultation ends in the hand-over.
      await consultBruno();
      await screenshot(op, 'transfer-1-consulting');

      // The consultation: the two operators hear each other, not the caller; the caller hears
      // the hold audio (0.4 s of 425 Hz every 4 s) and neither of them.
      const consulting = Date.now();
      hears('the operator (consulting)', await tonesOn(op, 'phone-audio', [440, 1000, 1600]), [1600], [440, 1000]);
      hears('the colleague (consulting)', await tonesOn(col, 'phone-audio', [440, 1000, 1600]), [1000], [440, 1600]);
      await new Promise((r) => setTimeout(r, Math.max(0, consulting + 4500 - Date.now())));
      hears('the caller (on hold)', callerTones(caller, consulting, consulting + 4500, [425, 1000, 1600]), [425], [1000, 1600]);

      // The hand-over.
      await op.locator('#call-transfer').focus();
      const transferAt = Date.now();
      await op.keyboard.press('Enter');
      await op.waitForFunction(() => !document.getElementById('wrapup')?.hidden, null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 3000));
      const landed = caller.received.find((p) => {
        if (p.at < transferAt || p.pt !== 0) return false;
        const frame = [...p.payload].map(ulaw);
        return goertzel(frame, 8000, 1600) > 0.3;
      });
      assert.ok(landed, 'the colleague reaches the caller');
      assert.ok(landed.at - transferAt < 1000, `the caller hears the colleague ${landed.at - transferAt} ms after the hand-over`);
      // The longest silence in the caller's RTP around the hand-over (the hold audio until it,
      // the colleague after), and where it was.
      let gap = 0;
      let gapAt = 0;
      const span = caller.received.filter((p) => p.at >= transferAt - 2000 && p.at <= transferAt + 3000);
      for (let i = 1; i < span.length; i++) {
        if (span[i].at - span[i - 1].at > gap) [gap, gapAt] = [span[i].at - span[i - 1].at, span[i].at - transferAt];
      }
      if (process.env.TEST_LOG) console.log(`landed after ${landed.at - transferAt} ms; longest gap ${gap} ms, ${gapAt} ms from the hand-over`);
      assert.ok(gap < 250, `the caller's audio never stopped for 250 ms around the hand-over (longest gap ${gap} ms, ${gapAt} ms from it)`);
      hears('the caller (handed over)', callerTones(caller, transferAt + 1500, transferAt + 3000, [440, 1000, 1600]), [1600], [440, 1000]);
      hears('the colleague (handed over)', await tonesOn(col, 'phone-audio', [440, 1000, 1600]), [440], [1000, 1600]);
      assert.ok(!caller.byeReceived, 'the caller stayed on the line');

      // The colleague ends the call.
      await endCall(col, caller);

      const record = await latestCallRecord(op);
      assert.ok(record, "the call's record");
      const steps = record.timeline.filter((e) => e.type === 'mediation').map((e) => `${e.user}:${e.action}`);
      assert.deepEqual(steps, [
        'anna:consult_invite', 'bruno:consult_join', 'anna:consult_leave',
        'anna:consult_invite', 'bruno:consult_join', 'anna:transfer', 'bruno:consult_leave',
      ]);
    } finally {
      caller.close();
      await colCtx.close();
      await opCtx.close();
    }
  });
});
