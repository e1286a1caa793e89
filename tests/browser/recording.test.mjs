// Recording with consent (docs/operators.md, "Recording a call"): a real SIP caller plays 440 Hz,
// the operator's page (its own Chromium, whose fake microphone plays 1 kHz) answers in the
// browser and records the call with "Registra" (Alt+R, from the keyboard), then stops it. A
// supervisor opens the call's record: its recording is listed with a player, and the WAV it plays
// holds both tones (Goertzel), so the recording is the call's mixed audio on the server's media
// path; the playing is in the audit log and the timeline shows the recording's start and stop.
// With HELPLINE_TEST_DATABASE_URL set, the operator's page is on a second node sharing the
// PostgreSQL database: the call's media stays on the first (the SIP caller's node), the start and
// the stop cross through the phone relay, and the first node records the call and stores it.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller, goertzel } from './lib/sipcaller.mjs';
import { HEARD, SILENT } from './lib/audio.mjs';
import { goOnline, screenshot, sipAddr, submitSignIn } from './lib/server.mjs';
import { Scene, acceptOffer, callAndPressZero, endCall, newPage, phoneConnected } from './lib/scene.mjs';

/** The 16-bit mono samples of a WAV (the data chunk), as numbers in [-1, 1). */
function wavSamples(buf) {
  assert.equal(buf.toString('ascii', 0, 4), 'RIFF');
  let at = 12;
  while (at + 8 <= buf.length) {
    const id = buf.toString('ascii', at, at + 4);
    const size = buf.readUInt32LE(at + 4);
    if (id === 'fmt ') {
      assert.equal(buf.readUInt16LE(at + 8 + 2), 1, 'mono');
      assert.equal(buf.readUInt32LE(at + 8 + 4), 8000, '8 kHz');
    }
    if (id === 'data') {
      const out = [];
      for (let i = at + 8; i + 1 < at + 8 + size && i + 1 < buf.length; i += 2) out.push(buf.readInt16LE(i) / 32768);
      return out;
    }
    at += 8 + size + (size % 2);
  }
  throw new Error('no data chunk');
}

describe('recording a call with consent', () => {
  let server;
  /** The operator's node: another one on PostgreSQL, the same one on SQLite. */
  let server2;
  let operatorBrowser;
  let supervisorBrowser;
  const scene = new Scene('helpline-recording-');

  before(async () => {
    ({ server, server2 } = await scene.startNodes());
    operatorBrowser = await scene.toneBrowser('op-1khz.wav', 1000);
    supervisorBrowser = await scene.launchBrowser();
  });

  after(() => scene.close());

  test('the operator records the call; the supervisor plays it: both tones, audited', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const sara = server.addUser({ name: 'sara', role: 'supervisor', languages: ['it'] });
    const { ctx: opCtx, page: op } = await newPage(operatorBrowser);
    await goOnline(op, server2, anna);

    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    const { ctx: supCtx, page: sup } = await newPage(supervisorBrowser, { width: 1400, height: 1000, microphone: false });
    try {
      // 0 at once: the caller hears the recording notice in the queue and does not refuse.
      await callAndPressZero(caller);
      await acceptOffer(op);
      await phoneConnected(op);

      const record = op.locator('#record-toggle');
      await record.waitFor({ state: 'visible', timeout: 10_000 });
      await op.waitForFunction(() => !document.getElementById('record-toggle').disabled, null, { timeout: 10_000 });
      assert.equal(await record.getAttribute('aria-pressed'), 'false');
      await op.keyboard.press('Alt+R');
      await op.waitForFunction(() => document.getElementById('record-toggle').getAttribute('aria-pressed') === 'true', null, { timeout: 10_000 });
      assert.match(await op.locator('#record-status').textContent(), /registrazione/i);
      await screenshot(op, 'recording-1-on');
      // Three seconds of the call: the caller's 440 Hz and the operator's 1 kHz.
      await new Promise((r) => setTimeout(r, 3000));
      await op.keyboard.press('Alt+R');
      await op.waitForFunction(() => document.getElementById('record-toggle').getAttribute('aria-pressed') === 'false', null, { timeout: 15_000 });

      const signInAt = async (page, user) => {
        await submitSignIn(page, `${server.url}/supervisor`, user);
        await page.locator('#log, #wallboard, main').first().waitFor({ state: 'visible', timeout: 15_000 });
        // Signed in once the API answers (the form's request may still be on its way).
        for (let i = 0; i < 150; i++) {
          if (await page.evaluate(async () => (await fetch('/api/calls')).status) === 200) return;
          await page.waitForTimeout(100);
        }
        throw new Error(`${user.name} could not sign in`);
      };
      await signInAt(sup, sara);
      const callId = await sup.evaluate(async () => (await (await fetch('/api/calls')).json()).calls[0]?.call_id);
      assert.ok(callId, 'the call is in the log');
      const body = await sup.evaluate(async (id) => (await fetch(`/api/calls/${encodeURIComponent(id)}`)).json(), callId);
      assert.equal(body.recordings.length, 1, JSON.stringify(body.recordings));
      const rec = body.recordings[0];
      assert.ok(rec.ended_at && rec.duration_ms >= 2000, JSON.stringify(rec));
      assert.equal(rec.started_by, 'anna');
      const steps = body.timeline.filter((e) => e.type === 'recording').map((e) => `${e.user}:${e.action}`);
      assert.deepEqual(steps, ['anna:recording_start', 'anna:recording_stop']);

      // The supervisor's fetch of the WAV, as the player does.
      const bytes = await sup.evaluate(async (id) => {
        const r = await fetch(`/api/recordings/${encodeURIComponent(id)}`);
        return { status: r.status, type: r.headers.get('content-type'), data: Array.from(new Uint8Array(await r.arrayBuffer())) };
      }, rec.id);
      assert.equal(bytes.status, 200);
      assert.equal(bytes.type, 'audio/wav');
      const samples = wavSamples(Buffer.from(bytes.data));
      assert.ok(samples.length >= 16000, `${samples.length} samples`);
      // The whole recording: both parties, mixed (Chromium's noise suppression fades the
      // operator's steady tone after a second or so, so not only its end), and no tone nobody
      // played.
      // Measured on half-second pieces (a tone's phase does not hold across the packets of
      // seconds: the mixer's and the network's jitter), averaged.
      const share = (freq) => {
        const shares = [];
        for (let i = 0; i + 4000 <= samples.length; i += 4000) shares.push(goertzel(samples.slice(i, i + 4000), 8000, freq));
        return shares.reduce((a, x) => a + x, 0) / shares.length;
      };
      const p440 = share(440);
      const p1000 = share(1000);
      const p2000 = share(2000);
      if (process.env.TEST_LOG) {
        for (let i = 0; i + 4000 <= samples.length; i += 4000) {
          const seg = samples.slice(i, i + 4000);
          console.log('segment', i / 8000, goertzel(seg, 8000, 440).toFixed(4), goertzel(seg, 8000, 1000).toFixed(4), Math.sqrt(seg.reduce((a, x) => a + x * x, 0) / seg.length).toFixed(4));
        }
        console.log('recording', { p440, p1000, p2000 });
      }
      assert.ok(p440 > HEARD, `the recording holds the caller's 440 Hz: ${p440}`);
      assert.ok(p1000 > HEARD, `the recording holds the operator's 1 kHz: ${p1000}`);
      assert.ok(p2000 < SILENT, `nobody played 2 kHz: ${p2000}`);

      // The playing is in the audit log (admins read it).
      const adele = server.addUser({ name: 'adele', role: 'admin', languages: ['it'] });
      const adminCtx = await supervisorBrowser.newContext({ locale: 'it-IT' });
      const admin = await adminCtx.newPage();
      await signInAt(admin, adele);
      const log = await admin.evaluate(async () => (await fetch('/api/audit')).json());
      await adminCtx.close();
      const plays = (log.entries ?? []).filter((e) => e.action === 'play_recording');
      assert.equal(plays.length, 1, JSON.stringify(log));
      assert.equal(plays[0].user, 'sara');
      assert.equal(plays[0].detail, rec.id);

      // The player, in the call's record on the supervisors' page.
      await sup.goto(`${server.url}/supervisor`);
      await sup.locator('#log tbody tr, #log-table tbody tr').first().waitFor({ state: 'visible', timeout: 15_000 }).catch(() => {});
      await screenshot(sup, 'recording-2-supervisor');

      await endCall(op, caller);
    } finally {
      caller.close();
      await supCtx.close();
      await opCtx.close();
    }
  });
});
