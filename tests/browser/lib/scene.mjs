// The set-up the call tests share, so that each test reads as what it proves: the nodes (one on
// SQLite, or two sharing a PostgreSQL database), one Chromium per party whose fake microphone
// plays that party's tone, the operator's page in its own context, a SIP caller reaching an
// operator's page, the carrier's transfer of a JSON-webhook call, and the call's record.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fakeMicFlags, toneWav } from './audio.mjs';
import { freshPostgresDatabase, launchBrowser, startServer } from './server.mjs';

/**
 * What one `describe` starts (servers, browsers, a temp dir for its tone files), stopped in one
 * go by `close()`: the browsers first, then the servers, the last started first.
 */
export class Scene {
  /** `prefix`: the temp dir's name, e.g. `helpline-transfer-`. */
  constructor(prefix) {
    this.dir = mkdtempSync(join(tmpdir(), prefix));
    this.browsers = [];
    this.servers = [];
  }

  /** `startServer(options)`, stopped with the scene. */
  async startServer(options) {
    const server = await startServer(options);
    this.servers.push(server);
    return server;
  }

  /**
   * The call's node (`server`) and the pages' other node (`server2`): with
   * HELPLINE_TEST_DATABASE_URL set, two nodes sharing a fresh PostgreSQL database (`shared`, its
   * URL), otherwise one SQLite node that is both (`shared` null).
   */
  async startNodes() {
    const shared = freshPostgresDatabase();
    const server = await this.startServer({ databaseUrl: shared ?? undefined });
    const server2 = shared ? await this.startServer({ databaseUrl: shared }) : server;
    return { server, server2, shared };
  }

  /** `launchBrowser(options)`, closed with the scene. */
  async launchBrowser(options) {
    const browser = await launchBrowser(options);
    this.browsers.push(browser);
    return browser;
  }

  /**
   * A Chromium whose fake microphone plays `hz` (a WAV `secs` long, written in the scene's dir
   * as `name`), closed with the scene.
   */
  async toneBrowser(name, hz, secs = 10) {
    const wav = join(this.dir, name);
    toneWav(wav, hz, secs);
    return this.launchBrowser({ extraArgs: fakeMicFlags(wav) });
  }

  /** Closes the browsers, stops the servers (the last started first), removes the temp dir. */
  async close() {
    for (const browser of this.browsers) await browser.close();
    for (const server of [...this.servers].reverse()) await server.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * A fresh context of `browser` (Italian, `width`×`height`, the microphone granted unless
 * `microphone` is false) and its page: `{ ctx, page }`. The caller closes `ctx`.
 */
export async function newPage(browser, { width = 1300, height = 900, microphone = true } = {}) {
  const ctx = await browser.newContext({ viewport: { width, height }, locale: 'it-IT', ...(microphone ? { permissions: ['microphone'] } : {}) });
  return { ctx, page: await ctx.newPage() };
}

/**
 * A fresh context of `browser` for the tests of the pages themselves (Italian, Rome's time zone,
 * `width`×`height`, no microphone) and its page, whose uncaught exceptions and console errors
 * (except those `ignore` matches) go to `errors`: `{ ctx, page }`.
 */
export async function watchedPage(browser, { width, height }, errors, ignore = null) {
  const ctx = await browser.newContext({ viewport: { width, height }, locale: 'it-IT', timezoneId: 'Europe/Rome' });
  const page = await ctx.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error' && !ignore?.test(m.text())) errors.push(m.text()); });
  return { ctx, page };
}

/** Places `caller`'s SIP call and, a second into the menu, presses 0 for an operator. */
export async function callAndPressZero(caller) {
  await caller.call();
  await new Promise((r) => setTimeout(r, 1000));
  caller.press('0');
}

/** Waits for the offer on the operator's `page` and accepts it with a click. */
export async function acceptOffer(page) {
  await page.locator('#offer').waitFor({ state: 'visible', timeout: 30_000 });
  await page.locator('#offer-accept').click();
}

/** Waits until the page's browser phone is connected (`#phone-state`). */
export async function phoneConnected(page) {
  await page.waitForFunction(() => document.getElementById('phone-state')?.dataset.state === 'connected', null, { timeout: 30_000 });
}

/**
 * A SIP caller reaches the operator's `page`: calls, presses 0, the page accepts the offer and
 * its phone connects.
 */
export async function callerReachesPage(caller, page) {
  await callAndPressZero(caller);
  await acceptOffer(page);
  await phoneConnected(page);
}

/** The operator's `page` ends the call (Alt+E) and `caller` (a SipCaller) gets the BYE within 20 s. */
export async function endCall(page, caller) {
  await page.keyboard.press('Alt+E');
  await caller.waitForBye(20_000);
}

/**
 * The carrier's side of a JSON-webhook call accepted by a browser operator: `no_input` events
 * (every 250 ms, at most `tries`) until the answer holds the `transfer` action, returned.
 */
export async function carrierTransfer(server, callId, tries) {
  let transfer;
  for (let i = 0; i < tries && !transfer; i++) {
    const answer = await server.callEvent(callId, { type: 'no_input' });
    transfer = answer.actions?.find((a) => a.type === 'transfer');
    if (!transfer) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(transfer, 'the carrier is told to transfer');
  return transfer;
}

/** The record (`GET /api/calls/{id}`) of the latest call in the log, as `page`'s user reads it; null if none. */
export async function latestCallRecord(page) {
  return page.evaluate(async () => {
    const id = (await (await fetch('/api/calls')).json()).calls[0]?.call_id;
    return id ? (await fetch(`/api/calls/${encodeURIComponent(id)}`)).json() : null;
  });
}
