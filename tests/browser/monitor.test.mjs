// Supervisors on a live call (docs/supervisors.md): a real SIP caller plays 440 Hz, the
// operator's page (its own Chromium, whose fake microphone plays 1 kHz) answers in the browser,
// and the supervisor's page (another Chromium, 2 kHz) whispers, listens and barges in from the
// wallboard's live calls, with the keyboard. Goertzel checks on what each party receives prove
// who hears whom: whisper → the operator hears 2 kHz, the caller does not; listen → the
// supervisor hears 440 Hz and 1 kHz, nobody hears 2 kHz; barge → all three hear each other.
// Every action is in the call's timeline. With HELPLINE_TEST_DATABASE_URL set, the supervisor's
// page is on a second node sharing the PostgreSQL database: the call's media stays on the first,
// and the supervisor's offer, switches and end cross through the phone relay.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller } from './lib/sipcaller.mjs';
import { callerTones as tonesAt, hears, tonesOn } from './lib/audio.mjs';
import { goOnline, screenshot, sipAddr, submitSignIn } from './lib/server.mjs';
import { Scene, callerReachesPage, endCall, newPage } from './lib/scene.mjs';

/** What the caller receives over the second after `since` + 0.5 s (waited for). */
const callerTones = (caller, since) => tonesAt(caller, since, [440, 1000, 2000]);

describe('supervisors listen, whisper and barge in', () => {
  let server;
  /** The supervisor's node: another one on PostgreSQL, the same one on SQLite. */
  let server2;
  let operatorBrowser;
  let supervisorBrowser;
  const scene = new Scene('helpline-monitor-');

  before(async () => {
    ({ server, server2 } = await scene.startNodes());
    operatorBrowser = await scene.toneBrowser('op-1khz.wav', 1000);
    supervisorBrowser = await scene.toneBrowser('sup-2khz.wav', 2000);
  });

  after(() => scene.close());

  test('whisper, listen and barge: who hears whom, by tones; each in the timeline', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const sara = server.addUser({ name: 'sara', role: 'supervisor', languages: ['it'] });
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    await goOnline(op, server, anna);

    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    const { ctx: supCtx, page: sup } = await newPage(supervisorBrowser, { width: 1400, height: 1000 });
    try {
      await callerReachesPage(caller, op);

      await submitSignIn(sup, `${server2.url}/supervisor`, sara);
      const row = sup.locator('#wb-live tbody tr');
      await row.first().waitFor({ state: 'visible', timeout: 15_000 });
      const callId = await row.first().getAttribute('data-call');

      // Whisper, with the keyboard: the operator hears the supervisor, the caller does not.
      const whisper = sup.getByRole('button', { name: 'Suggerisci' });
      await whisper.focus();
      await sup.keyboard.press('Enter');
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.state === 'connected', null, { timeout: 30_000 });
      await screenshot(sup, 'monitor-1-whisper');
      let since = Date.now();
      hears('the operator (whisper)', await tonesOn(op, 'phone-audio', [440, 1000, 2000]), [440, 2000], [1000]);
      hears('the caller (whisper)', await callerTones(caller, since), [1000], [440, 2000]);
      hears('the supervisor (whisper)', await tonesOn(sup, 'monitor-audio', [440, 1000, 2000]), [440, 1000], [2000]);

      // Listen: the supervisor hears both, nobody hears the supervisor.
      await sup.getByRole('button', { name: 'Ascolta' }).focus();
      await sup.keyboard.press('Enter');
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.mode === 'listen', null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 300));
      since = Date.now();
      hears('the supervisor (listen)', await tonesOn(sup, 'monitor-audio', [440, 1000, 2000]), [440, 1000], [2000]);
      hears('the operator (listen)', await tonesOn(op, 'phone-audio', [440, 1000, 2000]), [440], [1000, 2000]);
      hears('the caller (listen)', await callerTones(caller, since), [1000], [440, 2000]);

      // Barge: a three-way call.
      await sup.getByRole('button', { name: 'Intervieni' }).focus();
      await sup.keyboard.press('Enter');
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.mode === 'barge', null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 300));
      since = Date.now();
      hears('the caller (barge)', await callerTones(caller, since), [1000, 2000], [440]);
      hears('the operator (barge)', await tonesOn(op, 'phone-audio', [440, 1000, 2000]), [440, 2000], [1000]);
      hears('the supervisor (barge)', await tonesOn(sup, 'monitor-audio', [440, 1000, 2000]), [440, 1000], [2000]);
      await screenshot(sup, 'monitor-2-barge');
      const metric = async (name) => {
        const text = (await server.fetchJson('/metrics')).body;
        return Number(new RegExp(`^${name} (\\S+)`, 'm').exec(text)?.[1] ?? NaN);
      };
      assert.equal(await metric('helpline_conferences'), 1, 'one call mixed now');
      assert.ok(await metric('helpline_mixing_delay_seconds_count') > 100, 'mixing ticks observed');

      // Hang up the supervisor's leg: the two-party call goes on, plainly bridged.
      await sup.getByRole('button', { name: 'Chiudi' }).click();
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.state === 'idle', null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 500));
      since = Date.now();
      hears('the caller (after)', await callerTones(caller, since), [1000], [440, 2000]);
      hears('the operator (after)', await tonesOn(op, 'phone-audio', [440, 1000, 2000]), [440], [1000, 2000]);
      assert.ok(!caller.byeReceived, 'the caller stayed on the line');
      assert.equal(await metric('helpline_conferences'), 0, 'back to a plain bridge');

      // Every action is in the call's timeline (from the audit log).
      const record = await sup.evaluate(async (id) => (await fetch(`/api/calls/${encodeURIComponent(id)}`)).json(), callId);
      const actions = record.timeline.filter((e) => e.type === 'monitor').map((e) => `${e.supervisor}:${e.action}`);
      assert.deepEqual(actions, ['sara:whisper', 'sara:listen', 'sara:barge', 'sara:monitor_end']);

      await endCall(op, caller);
    } finally {
      caller.close();
      await supCtx.close();
      await opCtx.close();
    }
  });
});
