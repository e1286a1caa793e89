// A voice message out of hours, from the caller's phone to the operator's player: the helpline is
// closed (a flow whose holidays are the days around the test); a real SIP caller over UDP (lib/sipcaller.mjs) that
// plays 440 Hz from the start takes the Italian offer (1), asks for a callback (1), hears the
// voicemail prompt and the beep (1 kHz, a Goertzel check on what it receives), speaks for two
// seconds and presses # (RFC 4733). The operator's page lists the request with a player; the
// player loads the message (its duration is the stored one), and the WAV the page gets at the
// player's address holds 440 Hz and not the beep.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SipCaller, goertzel } from './lib/sipcaller.mjs';
import { closedFlow, screenshot, signIn, sipAddr } from './lib/server.mjs';
import { Scene, newPage } from './lib/scene.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until the caller has received audio after `since` (ms since the epoch). */
async function heardSince(caller, since, what) {
  const deadline = Date.now() + 30_000;
  while (caller.audioSince(since).length < 800) {
    if (Date.now() > deadline) throw new Error(`${what}: nothing heard`);
    await sleep(50);
  }
}

describe('voice messages', () => {
  let server;
  let browser;
  const scene = new Scene('helpline-voicemail-');

  before(async () => {
    server = await scene.startServer({ env: { HELPLINE_FLOW_FILE: closedFlow(scene.dir) } });
    browser = await scene.launchBrowser({ extraArgs: ['--autoplay-policy=no-user-gesture-required'] });
  });

  after(() => scene.close());

  test('a caller out of hours leaves a 440 Hz message; the operator\'s player gets it', async () => {
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await caller.call();
      await heardSince(caller, 0, 'the Italian offer');
      caller.press('1');
      const pressed = Date.now();
      await sleep(400);
      await heardSince(caller, pressed + 300, 'the welcome');
      caller.press('1'); // out of hours: 1 is a callback
      // The beep: 1 kHz in what the caller receives, after the voicemail prompt.
      const deadline = Date.now() + 60_000;
      let beepAt = 0;
      while (!beepAt) {
        assert.ok(Date.now() < deadline, 'no beep heard within 60 s');
        await sleep(100);
        const recent = caller.audioSince(Date.now() - 300);
        if (recent.length >= 1600 && goertzel(recent, 8000, 1000) > 0.4) beepAt = Date.now();
      }
      await sleep(2500);
      caller.press('#');
      await caller.waitForBye(30_000);
    } finally {
      caller.close();
    }

    const vera = server.addUser({ name: 'vera', languages: ['it'] });
    const { ctx, page } = await newPage(browser, { microphone: false });
    await signIn(page, server, vera);
    await page.locator('#callbacks-refresh').click();
    const player = page.locator('#callbacks audio');
    await player.waitFor({ state: 'attached', timeout: 10_000 });
    await screenshot(page, 'voicemail-list');
    const item = await page.locator('#callbacks li').first().textContent();
    assert.match(item, /\+39 3\*\* \*\*\* \*\*67/, 'the masked number');
    assert.doesNotMatch(item, /3331234567/, 'never the number');
    assert.match(item, /Messaggio vocale \(\d+ s\)/);

    // The player loads the message: its length is the stored one (about two and a half seconds).
    const duration = await player.evaluate((el) => new Promise((resolve, reject) => {
      el.addEventListener('loadedmetadata', () => resolve(el.duration), { once: true });
      el.addEventListener('error', () => reject(new Error(`media error ${el.error?.code}`)), { once: true });
      el.load();
    }));
    assert.ok(duration > 1.5 && duration < 4, `the message lasts ${duration} s`);

    // The bytes behind the player, fetched by the page with its session: a WAV of 440 Hz.
    const bytes = await player.evaluate(async (el) => {
      const r = await fetch(el.currentSrc || el.src);
      return { status: r.status, type: r.headers.get('content-type'), data: Array.from(new Uint8Array(await r.arrayBuffer())) };
    });
    assert.equal(bytes.status, 200);
    assert.equal(bytes.type, 'audio/wav');
    const wav = Buffer.from(bytes.data);
    assert.equal(wav.toString('latin1', 0, 4), 'RIFF');
    assert.equal(wav.readUInt32LE(24), 8000, '8 kHz');
    const samples = [];
    for (let i = 44; i + 1 < wav.length; i += 2) samples.push(wav.readInt16LE(i));
    const middle = samples.slice(samples.length / 4, (samples.length * 3) / 4);
    const p440 = goertzel(middle, 8000, 440);
    const p1000 = goertzel(middle, 8000, 1000);
    assert.ok(p440 > 0.4 && p1000 < 0.01, `440 Hz ${p440.toFixed(3)}, 1 kHz ${p1000.toFixed(3)}`);
    await ctx.close();
  });
});
