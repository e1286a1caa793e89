// Supervisors on a live call (docs/supervisors.md): a real SIP caller plays 440 Hz, the
// operator's page (its own Chromium, whose fake microphone plays 1 kHz) answers in the browser,
// and the supervisor's page (another Chromium, 2 kHz) whispers, listens and barges in from the
// wallboard's live calls, with the keyboard. Goertzel checks on what each party receives prove
// who hears whom: whisper → the operator hears 2 kHz, the caller does not; listen → the
// supervisor hears 440 Hz and 1 kHz, nobody hears 2 kHz; barge → all three hear each other.
// Every action is in the call's timeline.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SipCaller, goertzel } from './lib/sipcaller.mjs';
import { launchBrowser, screenshot, signIn, startServer } from './lib/server.mjs';

function toneWav(path, hz, secs) {
  const rate = 48_000;
  const n = rate * secs;
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) data.writeInt16LE(Math.round(12_000 * Math.sin((2 * Math.PI * hz * i) / rate)), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0);
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVEfmt ', 8);
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20);
  header.writeUInt16LE(1, 22);
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36);
  header.writeUInt32LE(data.length, 40);
  writeFileSync(path, Buffer.concat([header, data]));
}

function sipAddr(server) {
  for (const line of server.log) {
    try {
      const v = JSON.parse(line);
      if (v?.fields?.message === 'SIP server listening (UDP)') {
        const [host, port] = v.fields.addr.split(':');
        return { host, port: Number(port) };
      }
    } catch {
      // not JSON
    }
  }
  throw new Error('no SIP address in the log');
}

/** Power of 440 Hz, 1 kHz and 2 kHz in the audio element `id`'s stream (a WebAudio analyser). */
async function tonesOn(page, id) {
  return page.evaluate(async (id) => {
    const el = document.getElementById(id);
    const ctx = new AudioContext();
    await ctx.resume();
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 16384;
    ctx.createMediaStreamSource(el.srcObject).connect(analyser);
    await new Promise((r) => setTimeout(r, 1500));
    const data = new Float32Array(analyser.fftSize);
    analyser.getFloatTimeDomainData(data);
    const power = (freq) => {
      const coeff = 2 * Math.cos((2 * Math.PI * freq) / ctx.sampleRate);
      let s1 = 0;
      let s2 = 0;
      let energy = 0;
      for (const x of data) {
        const s = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
        energy += x * x;
      }
      return energy > 0 ? (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (energy * data.length / 2) : 0;
    };
    const result = { p440: power(440), p1000: power(1000), p2000: power(2000) };
    await ctx.close();
    return result;
  }, id);
}

/** What the caller receives over the second after `since` + 0.5 s (waited for). */
async function callerTones(caller, since) {
  await new Promise((r) => setTimeout(r, Math.max(0, since + 1500 - Date.now())));
  const heard = caller.audioSince(since + 500).slice(-8000);
  assert.ok(heard.length >= 4000, `the caller received audio (${heard.length} samples)`);
  return { p440: goertzel(heard, 8000, 440), p1000: goertzel(heard, 8000, 1000), p2000: goertzel(heard, 8000, 2000) };
}

/** A share above HEARD: the tone is there; below SILENT: it is not. */
const HEARD = 0.01;
const SILENT = 0.002;

function hears(who, tones, want, not) {
  if (process.env.TEST_LOG) console.log(who, JSON.stringify(tones));
  for (const f of want) assert.ok(tones[`p${f}`] > HEARD, `${who} hears ${f} Hz: ${JSON.stringify(tones)}`);
  for (const f of not) assert.ok(tones[`p${f}`] < SILENT, `${who} does not hear ${f} Hz: ${JSON.stringify(tones)}`);
}

const FLAGS = (wav) => [
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  `--use-file-for-fake-audio-capture=${wav}`, '--allow-loopback-in-peer-connection',
  '--autoplay-policy=no-user-gesture-required',
];

describe('supervisors listen, whisper and barge in', () => {
  let server;
  let operatorBrowser;
  let supervisorBrowser;
  const dir = mkdtempSync(join(tmpdir(), 'helpline-monitor-'));

  before(async () => {
    toneWav(join(dir, 'op-1khz.wav'), 1000, 10);
    toneWav(join(dir, 'sup-2khz.wav'), 2000, 10);
    server = await startServer();
    operatorBrowser = await launchBrowser({ extraArgs: FLAGS(join(dir, 'op-1khz.wav')) });
    supervisorBrowser = await launchBrowser({ extraArgs: FLAGS(join(dir, 'sup-2khz.wav')) });
  });

  after(async () => {
    await operatorBrowser?.close();
    await supervisorBrowser?.close();
    await server?.stop();
  });

  test('whisper, listen and barge: who hears whom, by tones; each in the timeline', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const sara = server.addUser({ name: 'sara', role: 'supervisor', languages: ['it'] });
    const opCtx = await operatorBrowser.newContext({ viewport: { width: 1300, height: 900 }, locale: 'it-IT', permissions: ['microphone'] });
    const op = await opCtx.newPage();
    await signIn(op, server, anna);
    await op.waitForFunction(() => ['Connesso', 'Connected'].includes(document.getElementById('conn-text')?.textContent), null, { timeout: 15_000 });
    await op.keyboard.press('Alt+1');
    await op.waitForFunction(() => document.querySelector('input[name="presence"]:checked')?.value === 'available', null, { timeout: 5_000 });

    const caller = new SipCaller({ server: sipAddr(server), toneHz: 440 });
    await caller.start();
    const supCtx = await supervisorBrowser.newContext({ viewport: { width: 1400, height: 1000 }, locale: 'it-IT', permissions: ['microphone'] });
    const sup = await supCtx.newPage();
    try {
      await caller.call();
      await new Promise((r) => setTimeout(r, 1000));
      caller.press('0');
      await op.locator('#offer').waitFor({ state: 'visible', timeout: 30_000 });
      await op.locator('#offer-accept').click();
      await op.waitForFunction(() => document.getElementById('phone-state')?.dataset.state === 'connected', null, { timeout: 30_000 });

      await sup.goto(`${server.url}/supervisor`);
      await sup.getByLabel(/Nome utente|User name/).fill(sara.name);
      await sup.getByLabel('Password', { exact: true }).fill(sara.password);
      await sup.getByRole('button', { name: /Accedi|Sign in/ }).click();
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
      hears('the operator (whisper)', await tonesOn(op, 'phone-audio'), [440, 2000], [1000]);
      hears('the caller (whisper)', await callerTones(caller, since), [1000], [440, 2000]);
      hears('the supervisor (whisper)', await tonesOn(sup, 'monitor-audio'), [440, 1000], [2000]);

      // Listen: the supervisor hears both, nobody hears the supervisor.
      await sup.getByRole('button', { name: 'Ascolta' }).focus();
      await sup.keyboard.press('Enter');
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.mode === 'listen', null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 300));
      since = Date.now();
      hears('the supervisor (listen)', await tonesOn(sup, 'monitor-audio'), [440, 1000], [2000]);
      hears('the operator (listen)', await tonesOn(op, 'phone-audio'), [440], [1000, 2000]);
      hears('the caller (listen)', await callerTones(caller, since), [1000], [440, 2000]);

      // Barge: a three-way call.
      await sup.getByRole('button', { name: 'Intervieni' }).focus();
      await sup.keyboard.press('Enter');
      await sup.waitForFunction(() => document.getElementById('monitor-state')?.dataset.mode === 'barge', null, { timeout: 10_000 });
      await new Promise((r) => setTimeout(r, 300));
      since = Date.now();
      hears('the caller (barge)', await callerTones(caller, since), [1000, 2000], [440]);
      hears('the operator (barge)', await tonesOn(op, 'phone-audio'), [440, 2000], [1000]);
      hears('the supervisor (barge)', await tonesOn(sup, 'monitor-audio'), [440, 1000], [2000]);
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
      hears('the operator (after)', await tonesOn(op, 'phone-audio'), [440], [1000, 2000]);
      assert.ok(!caller.byeReceived, 'the caller stayed on the line');
      assert.equal(await metric('helpline_conferences'), 0, 'back to a plain bridge');

      // Every action is in the call's timeline (from the audit log).
      const record = await sup.evaluate(async (id) => (await fetch(`/api/calls/${encodeURIComponent(id)}`)).json(), callId);
      const actions = record.timeline.filter((e) => e.type === 'monitor').map((e) => `${e.supervisor}:${e.action}`);
      assert.deepEqual(actions, ['sara:whisper', 'sara:listen', 'sara:barge', 'sara:monitor_end']);

      await op.keyboard.press('Alt+E');
      await caller.waitForBye(20_000);
    } finally {
      caller.close();
      await supCtx.close();
      await opCtx.close();
    }
  });
});
