// Audio for the tone tests: the WAV a fake microphone plays, what a page's audio element
// receives, measured in the page (a WebAudio analyser and a Goertzel filter), and what a SIP
// caller (lib/sipcaller.mjs) receives, measured here.

import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { goertzel, ulawDecode } from './sipcaller.mjs';

/** A tone's share of the energy above HEARD: the tone is there; below SILENT: it is not. */
export const HEARD = 0.01;
export const SILENT = 0.002;

/** Asserts that `who` (a party of a call) hears the `want` tones and not the `not` ones. */
export function hears(who, tones, want, not) {
  if (process.env.TEST_LOG) console.log(who, JSON.stringify(tones));
  for (const f of want) assert.ok(tones[`p${f}`] > HEARD, `${who} hears ${f} Hz: ${JSON.stringify(tones)}`);
  for (const f of not) assert.ok(tones[`p${f}`] < SILENT, `${who} does not hear ${f} Hz: ${JSON.stringify(tones)}`);
}

/** Chromium's flags for a page whose microphone plays `wav` (on loopback, with no prompt). */
export function fakeMicFlags(wav) {
  return [
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    `--use-file-for-fake-audio-capture=${wav}`, '--allow-loopback-in-peer-connection',
    '--autoplay-policy=no-user-gesture-required',
  ];
}

/** Writes a mono 16-bit WAV of a `hz` tone, `secs` long at 48 kHz (Chromium's fake microphone). */
export function toneWav(path, hz, secs) {
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

/**
 * The share of the energy at each of `freqs` in 1.5 s of what the audio element `id` of `page`
 * plays: `{p440: …, p1000: …}`.
 */
export async function tonesOn(page, id, freqs) {
  return page.evaluate(async ({ id, freqs }) => {
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
    const result = Object.fromEntries(freqs.map((f) => [`p${f}`, power(f)]));
    await ctx.close();
    return result;
  }, { id, freqs });
}

/**
 * What `caller` (a SipCaller) receives over the second after `since` + 0.5 s (waited for), as
 * the share of each of `freqs`: `{p440: …, p1000: …}`.
 */
export async function callerTones(caller, since, freqs) {
  await new Promise((r) => setTimeout(r, Math.max(0, since + 1500 - Date.now())));
  const heard = caller.audioSince(since + 500).slice(-8000);
  assert.ok(heard.length >= 4000, `the caller received audio (${heard.length} samples)`);
  return Object.fromEntries(freqs.map((f) => [`p${f}`, goertzel(heard, 8000, f)]));
}

/**
 * The μ-law audio `caller` received between `from` and `to` (ms since the epoch; already past),
 * as the share of each of `freqs`; at least a second of it.
 */
export function callerTonesBetween(caller, from, to, freqs) {
  const samples = [];
  for (const p of caller.received) {
    if (p.at < from || p.at >= to || p.pt !== 0) continue;
    for (const b of p.payload) samples.push(ulawDecode(b));
  }
  assert.ok(samples.length >= 8000, `the caller received audio (${samples.length} samples)`);
  return Object.fromEntries(freqs.map((f) => [`p${f}`, goertzel(samples, 8000, f)]));
}
