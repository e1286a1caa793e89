// An intercultural mediator on a live call (docs/operators.md, "Adding a mediator"): a real SIP
// caller plays 440 Hz, the operator's page (its own Chromium, whose fake microphone plays 1 kHz)
// answers in the browser, presses "Aggiungi mediatore" with the keyboard (Alt+M) and invites the
// mediator, whose page (another Chromium, 1.6 kHz) gets the request with the screen-pop and joins
// ("Partecipa come mediatore"). Goertzel checks on what each party receives prove the three-way
// call: each hears the two others and not itself. Then the operator leaves the call to the
// mediator: the caller and the mediator still hear each other, the call is not over, and the
// mediator ends it. Every step is in the call's timeline. The same for a JSON-webhook caller, whom
// the carrier (a SIP peer playing 440 Hz) transfers to the operator's page. With HELPLINE_TEST_DATABASE_URL set,
// both pages are on a second node sharing the PostgreSQL database: the call's media stays on the
// first, and the mediator's admission, offer, states and hang-up and the operator's leaving cross
// through the phone relay.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller } from './lib/sipcaller.mjs';
import { callerTones as tonesAt, hears, tonesOn } from './lib/audio.mjs';
import { goOnline, screenshot, sipAddr } from './lib/server.mjs';
import { Scene, acceptOffer, callerReachesPage, carrierTransfer, endCall, latestCallRecord, newPage, phoneConnected } from './lib/scene.mjs';

/** What the caller receives over the second after `since` + 0.5 s (waited for). */
const callerTones = (caller, since) => tonesAt(caller, since, [440, 1000, 1600]);

describe('an intercultural mediator joins a call', () => {
  let server;
  /** The pages' node: another one on PostgreSQL, the same one on SQLite. */
  let server2;
  let operatorBrowser;
  let mediatorBrowser;
  const scene = new Scene('helpline-mediator-');

  before(async () => {
    ({ server, server2 } = await scene.startNodes());
    operatorBrowser = await scene.toneBrowser('op-1khz.wav', 1000);
    mediatorBrowser = await scene.toneBrowser('med-1600.wav', 1600);
  });

  after(() => scene.close());

  test('three tones, each party hears the two others; the operator leaves, the caller and the mediator go on', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    // Signed in once anna has the call (the ACD offers calls to mediators too).
    const marco = server.addUser({ name: 'marco', languages: ['it', 'ar'], mediator: true });
    server.addUser({ name: 'lucia', languages: ['ar'], mediator: true }); // not the caller's language
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    const { ctx: medCtx, page: med } = await newPage(mediatorBrowser);
    await goOnline(op, server2, anna);
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await callerReachesPage(caller, op);
      await goOnline(med, server2, marco);

      // "Aggiungi mediatore" with the keyboard: only marco speaks the caller's language.
      assert.ok(await op.getByRole('button', { name: /Aggiungi mediatore/ }).isVisible());
      await op.keyboard.press('Alt+M');
      const invite = op.getByRole('button', { name: 'Invita marco' });
      await invite.waitFor({ state: 'visible', timeout: 10_000 });
      assert.equal(await op.locator('#mediator-list li').count(), 1, 'lucia does not speak Italian');
      await op.keyboard.press('Enter');
      await op.waitForFunction(() => /marco/.test(document.getElementById('mediator-status')?.textContent ?? ''), null, { timeout: 10_000 });
      await screenshot(op, 'mediator-1-invited');

      // The mediator's request, with the screen-pop; joined with the keyboard.
      const join = med.getByRole('button', { name: 'Partecipa come mediatore' });
      await join.waitFor({ state: 'visible', timeout: 15_000 });
      assert.match(await med.locator('#mediation-offer-from').textContent(), /anna/);
      await screenshot(med, 'mediator-2-request');
      await join.focus();
      await med.keyboard.press('Enter');
      await phoneConnected(med);
      await op.locator('#call-leave').waitFor({ state: 'visible', timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 500));

      // Three tones: each hears the two others, never itself.
      let since = Date.now();
      hears('the caller (three-way)', await callerTones(caller, since), [1000, 1600], [440]);
      hears('the operator (three-way)', await tonesOn(op, 'phone-audio', [440, 1000, 1600]), [440, 1600], [1000]);
      hears('the mediator (three-way)', await tonesOn(med, 'phone-audio', [440, 1000, 1600]), [440, 1000], [1600]);
      await screenshot(op, 'mediator-3-three-way');

      // The operator leaves the call to the mediator: it goes on between the caller and marco.
      await op.locator('#call-leave').focus();
      await op.keyboard.press('Enter');
      await op.waitForFunction(() => !document.getElementById('wrapup')?.hidden, null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 700));
      since = Date.now();
      hears('the caller (operator gone)', await callerTones(caller, since), [1600], [440, 1000]);
      hears('the mediator (operator gone)', await tonesOn(med, 'phone-audio', [440, 1000, 1600]), [440], [1000, 1600]);
      assert.ok(!caller.byeReceived, 'the caller stayed on the line');

      // The mediator ends the call.
      await endCall(med, caller);

      // The call's record, as its operator sees it.
      const record = await latestCallRecord(op);
      assert.ok(record, "the call's record");
      const steps = record.timeline.filter((e) => e.type === 'mediation').map((e) => `${e.user}:${e.action}`);
      assert.deepEqual(steps, ['anna:mediator_invite', 'marco:mediator_join', 'anna:operator_leave', 'marco:mediator_leave']);
    } finally {
      caller.close();
      await medCtx.close();
      await opCtx.close();
    }
  });

  test("a JSON-webhook caller: the carrier's transfer reaches the operator's page, the mediator joins, three tones", async () => {
    const carla = server.addUser({ name: 'carla', languages: ['it'], areas: ['casa'] });
    const dario = server.addUser({ name: 'dario', languages: ['it'], mediator: true });
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    const { ctx: medCtx, page: med } = await newPage(mediatorBrowser);
    await goOnline(op, server2, carla);
    const callId = 'webhook-mediator-1';
    await server.placeCall(callId);
    await acceptOffer(op);
    // The carrier's next request gets the transfer to the operator's address on the page's node.
    const transfer = await carrierTransfer(server, callId, 40);
    const [, host, port] = transfer.to.match(/@([^:;]+):(\d+);/);
    const carrier = await SipCaller.started({ server: { host, port: Number(port) }, target: transfer.to, toneHz: 440 });
    try {
      await carrier.call();
      await phoneConnected(op);
      await goOnline(med, server2, dario);
      await op.keyboard.press('Alt+M');
      const invite = op.getByRole('button', { name: 'Invita dario' });
      await invite.waitFor({ state: 'visible', timeout: 10_000 });
      await invite.focus();
      await op.keyboard.press('Enter');
      const join = med.getByRole('button', { name: 'Partecipa come mediatore' });
      await join.waitFor({ state: 'visible', timeout: 15_000 });
      await join.focus();
      await med.keyboard.press('Enter');
      await phoneConnected(med);
      await new Promise((r) => setTimeout(r, 500));

      const since = Date.now();
      hears('the carrier (three-way)', await callerTones(carrier, since), [1000, 1600], [440]);
      hears('the operator (three-way)', await tonesOn(op, 'phone-audio', [440, 1000, 1600]), [440, 1600], [1000]);
      hears('the mediator (three-way)', await tonesOn(med, 'phone-audio', [440, 1000, 1600]), [440, 1000], [1600]);

      // The mediator leaves; the caller and the operator go on, and the operator ends the call.
      await med.keyboard.press('Alt+E');
      await med.waitForFunction(() => !document.getElementById('wrapup')?.hidden, null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 700));
      hears('the carrier (mediator gone)', await callerTones(carrier, Date.now()), [1000], [440, 1600]);
      assert.ok(!carrier.byeReceived, 'the carrier stayed on the line');
      await endCall(op, carrier);
    } finally {
      carrier.close();
      await medCtx.close();
      await opCtx.close();
    }
  });
});
