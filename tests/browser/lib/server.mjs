// Shared helpers of the browser tests: the real `helpline serve` binary on a free port with a
// fresh SQLite database, users made with `helpline user add`, calls placed through the signed
// JSON webhook (`POST /voice/events`, docs/webhooks.md), and headless Chromium.
//
// Environment: HELPLINE_BIN (the binary; default `$CARGO_TARGET_DIR/debug/helpline`, else
// `target/debug/helpline`), CHROMIUM (default /usr/bin/chromium), TEST_LOG (print the server's log).

import { spawn, spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const SCREENSHOTS = join(REPO, 'tests/browser/screenshots');
/** The key the test servers verify JSON webhook signatures with. */
export const WEBHOOK_SECRET = 'browser-test-webhook-secret-0123456789';
/** The server key (`HELPLINE_SECRET`, required with PostgreSQL), the same for every node. */
export const SERVER_SECRET = 'browser-test-server-secret-0123456789abcdef';

export function helplineBin() {
  if (process.env.HELPLINE_BIN) return process.env.HELPLINE_BIN;
  const target = process.env.CARGO_TARGET_DIR || join(REPO, 'target');
  return join(target, 'debug', 'helpline');
}

/** The environment of a `helpline` child: no inherited HELPLINE_* but ours. */
function childEnv(extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('HELPLINE_')) env[k] = v;
  return { ...env, NO_COLOR: '1', ...extra };
}

/**
 * The repository's menus (config/ivr.toml) with its `[hours]` table replaced by `hours` (lines of
 * TOML), written to `dir/name`.
 */
function flowWithHours(dir, name, hours) {
  const flow = readFileSync(join(REPO, 'config/ivr.toml'), 'utf8');
  const replaced = flow.replace(/^\[hours\][\s\S]*?(?=^\[nodes\.)/m, `${['[hours]', 'timezone = "Europe/Rome"', ...hours, ''].join('\n')}\n`);
  if (replaced === flow) throw new Error('config/ivr.toml: no [hours] table found to replace');
  const path = join(dir, name);
  writeFileSync(path, replaced);
  return path;
}

const WEEK = ['monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday', 'sunday'];

/**
 * The repository's menus with the helpline open around the clock (the tests must not depend on
 * the hour or the day they run), written to `dir`.
 */
function alwaysOpenFlow(dir) {
  return flowWithHours(dir, 'ivr-always-open.toml',
    [...WEEK.map((d) => `${d} = ["00:00-24:00"]`), 'national_holidays = false', 'extra_holidays = []']);
}

/**
 * The repository's menus with the helpline closed while the test runs (the hours must name some
 * opening: yesterday, today and tomorrow are holidays), written to `dir`; for
 * `HELPLINE_FLOW_FILE`.
 */
export function closedFlow(dir) {
  const day = (offset) => new Date(Date.now() + offset * 86_400_000).toISOString().slice(0, 10);
  const holidays = [-1, 0, 1].map((o) => `"${day(o)}"`).join(', ');
  return flowWithHours(dir, 'ivr-closed.toml',
    [...WEEK.map((d) => `${d} = ["09:00-18:00"]`), 'national_holidays = false', `extra_holidays = [${holidays}]`]);
}

/**
 * A fresh, empty PostgreSQL database on the server named by `HELPLINE_TEST_DATABASE_URL` (as the
 * Rust e2e tests use it; `scripts/test` sets it), created with `psql`; `null` when the variable is
 * unset (the tests then run on SQLite, one node).
 */
export function freshPostgresDatabase() {
  const server = process.env.HELPLINE_TEST_DATABASE_URL;
  if (!server) return null;
  const name = `helpline_browser_${process.pid}_${Date.now()}`;
  const r = spawnSync('psql', [server, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${name}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot create database ${name} on ${server}: ${r.stderr}${r.stdout}`);
  const url = new URL(server);
  url.pathname = `/${name}`;
  return url.toString();
}

/**
 * Starts `helpline serve` on port 0 (the OS picks a free port) and waits for its "HTTP server
 * listening" log line: on `databaseUrl` when given (several nodes can share one PostgreSQL
 * database), otherwise on a fresh SQLite database in its temp dir.
 */
export async function startServer({ env = {}, databaseUrl: shared } = {}) {
  const bin = helplineBin();
  if (!existsSync(bin)) throw new Error(`no helpline binary at ${bin}: build it (cargo build -p console) or set HELPLINE_BIN`);
  const dir = mkdtempSync(join(tmpdir(), 'helpline-browser-'));
  const databaseUrl = shared ?? `sqlite://${dir}/helpline.db`;
  const settings = {
    HELPLINE_HTTP_ADDR: '127.0.0.1:0',
    HELPLINE_SIP_ADDR: '127.0.0.1:0',
    HELPLINE_WEBRTC_ADDR: '127.0.0.1:0',
    HELPLINE_DATABASE_URL: databaseUrl,
    HELPLINE_DATA_DIR: join(dir, 'data'),
    HELPLINE_LOG_FORMAT: 'json',
    HELPLINE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    HELPLINE_SECRET: SERVER_SECRET,
    HELPLINE_PROMPTS_DIR: join(REPO, 'prompts'),
    HELPLINE_FLOW_FILE: alwaysOpenFlow(dir),
    ...env,
  };
  const child = spawn(bin, ['serve'], { cwd: dir, env: childEnv(settings), stdio: ['ignore', 'pipe', 'pipe'] });
  const log = [];
  child.stdout.resume();
  const lines = createInterface({ input: child.stderr });
  const addr = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error(`helpline serve did not start in 60 s:\n${log.join('\n')}`)), 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`helpline serve exited with ${code}:\n${log.join('\n')}`));
    });
    lines.on('line', (line) => {
      log.push(line);
      if (process.env.TEST_LOG) process.stderr.write(`[serve] ${line}\n`);
      let v;
      try {
        v = JSON.parse(line);
      } catch {
        return;
      }
      if (v?.fields?.message === 'HTTP server listening') {
        clearTimeout(timer);
        resolveAddr(v.fields.addr);
      }
    });
  });
  child.removeAllListeners('exit');
  return new Server({ child, dir, addr, databaseUrl, settings, log });
}

export class Server {
  constructor({ child, dir, addr, databaseUrl, settings, log }) {
    this.child = child;
    this.dir = dir;
    this.addr = addr;
    this.databaseUrl = databaseUrl;
    this.settings = settings;
    this.log = log;
    this.url = `http://${addr}`;
    this.callSeq = new Map();
  }

  /**
   * `helpline user add` against this server's database; the password goes through stdin.
   * `languages` and `areas` are arrays of codes.
   */
  addUser({ name, role = 'operator', password = `${name}-password-123`, languages = ['it'], areas = [], sipTarget, organization, mediator = false }) {
    const args = ['user', 'add', '--name', name, '--role', role, '--password-stdin'];
    if (mediator) args.push('--mediator');
    if (organization) args.push('--organization', organization);
    if (languages.length) args.push('--languages', languages.join(','));
    if (areas.length) args.push('--areas', areas.join(','));
    if (sipTarget) args.push('--sip-target', sipTarget);
    const r = spawnSync(helplineBin(), args, {
      cwd: this.dir, env: childEnv({ HELPLINE_DATABASE_URL: this.databaseUrl }), input: `${password}\n`, encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`helpline user add ${name} failed (${r.status}): ${r.stderr}${r.stdout}`);
    return { name, password, role };
  }

  /** `helpline directory import PATH` into this server's database (its index follows). */
  importDirectory(path) {
    const r = spawnSync(helplineBin(), ['directory', 'import', path], {
      cwd: this.dir, env: childEnv({ HELPLINE_DATABASE_URL: this.databaseUrl, HELPLINE_SECRET: SERVER_SECRET }), encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`helpline directory import ${path} failed (${r.status}): ${r.stderr}${r.stdout}`);
    return r.stdout;
  }

  /** A JSON request to the server (no session). */
  async fetchJson(path, init = {}) {
    const r = await fetch(this.url + path, init);
    const text = await r.text();
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
    return { status: r.status, body, headers: r.headers };
  }

  /** Posts one call event to `/voice/events`, signed with HMAC-SHA256 as docs/webhooks.md says. */
  async voiceEvent(event) {
    const body = JSON.stringify(event);
    const ts = Math.floor(Date.now() / 1000);
    const signature = `v1=${createHmac('sha256', WEBHOOK_SECRET).update(`${ts}.${body}`).digest('hex')}`;
    const r = await this.fetchJson('/voice/events', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-helpline-timestamp': String(ts), 'x-helpline-signature': signature },
      body,
    });
    if (r.status !== 200) throw new Error(`voice event ${body} → ${r.status} ${JSON.stringify(r.body)}`);
    return r.body;
  }

  /** The next event of a call, numbered for it. */
  async callEvent(callId, event) {
    const seq = (this.callSeq.get(callId) ?? 0) + 1;
    this.callSeq.set(callId, seq);
    return this.voiceEvent({ ...event, call_id: callId, seq });
  }

  /**
   * A caller from `from` who takes the Italian menus' path to an operator: keeps the guessed
   * language (1), picks the area by its digit, enters a CAP, asks for an operator (2). Returns
   * the last answer (its `enqueue` action). Digits follow config/ivr.toml.
   */
  async placeCall(callId, { from = '+39 333 123 4512', areaDigit = '3', cap = '22100' } = {}) {
    await this.callEvent(callId, { type: 'call.started', from, to: '803001' });
    await this.callEvent(callId, { type: 'digits', digits: '1' });
    await this.callEvent(callId, { type: 'digits', digits: areaDigit });
    await this.callEvent(callId, { type: 'digits', digits: cap });
    const answer = await this.callEvent(callId, { type: 'digits', digits: '2' });
    if (!answer.actions?.some((a) => a.type === 'enqueue')) {
      throw new Error(`call ${callId} did not reach the queue: ${JSON.stringify(answer)}`);
    }
    return answer;
  }

  /** Stops the server (SIGTERM, then SIGKILL after 10 s) and removes its temp dir. */
  async stop() {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once('exit', r));
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The address a line of the server's log gives (`fields.addr` of its JSON line whose message is
 * `message`): `{ host, port }`.
 */
export function loggedAddr(server, message) {
  for (const line of server.log) {
    try {
      const v = JSON.parse(line);
      if (v?.fields?.message === message) {
        const [host, port] = v.fields.addr.split(':');
        return { host, port: Number(port) };
      }
    } catch {
      // not JSON
    }
  }
  throw new Error(`no "${message}" in the log`);
}

/** The server's SIP address (UDP). */
export function sipAddr(server) {
  return loggedAddr(server, 'SIP server listening (UDP)');
}

/**
 * Headless Chromium from Debian, with nothing that reaches out to the (closed) network.
 * Playwright gives every launch a fresh, empty profile (its own `--user-data-dir` in a temp dir,
 * removed on close); it refuses the flag from us, so it is not in the list.
 */
export async function launchBrowser({ extraArgs = [] } = {}) {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ...extraArgs,
    ],
  });
}

/** Writes a full-page screenshot to tests/browser/screenshots/<name>.png. */
export async function screenshot(page, name) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}

/** Fills the sign-in form of the page at `url` (the console's or the supervisors') as `user` and submits it. */
export async function submitSignIn(page, url, user) {
  await page.goto(url);
  await page.getByLabel(/Nome utente|User name/).fill(user.name);
  await page.getByLabel('Password', { exact: true }).fill(user.password);
  await page.getByRole('button', { name: /Accedi|Sign in/ }).click();
}

/** Signs in through the page's form and waits for the connection to come up. */
export async function signIn(page, server, user) {
  await submitSignIn(page, `${server.url}/console`, user);
  await page.locator('#workspace').waitFor({ state: 'visible' });
}

/** Waits until the console's socket is up ("Connesso"): before it, the page cannot send a change. */
export async function socketUp(page) {
  await page.waitForFunction(() => ['Connesso', 'Connected'].includes(document.getElementById('conn-text')?.textContent), null, { timeout: 15_000 });
}

/** Makes a signed-in operator available (Alt+1) once their console's socket is up. */
export async function goAvailable(page) {
  await socketUp(page);
  await page.keyboard.press('Alt+1');
  await page.waitForFunction(() => document.querySelector('input[name="presence"]:checked')?.value === 'available', null, { timeout: 5_000 });
}

/** Signs `user` in and makes them available once their console's socket is up. */
export async function goOnline(page, server, user) {
  await signIn(page, server, user);
  await goAvailable(page);
}

/**
 * `scripts/cluster` (docs/scale-out.md) with two nodes on `databaseUrl`: Kamailio in front of
 * their SIP, HAProxy in front of their HTTP, on free ports of 127.0.0.1; resolves once it says it
 * is up (its `ready` file). `server` is the cluster as the pages see it (HAProxy's URL) and as
 * `helpline user add` reaches it (the database); `sip` is Kamailio's address.
 */
export async function startCluster(databaseUrl) {
  const dir = mkdtempSync(join(tmpdir(), 'helpline-cluster-'));
  const free = () => {
    const r = spawnSync('python3', ['-c', 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); t=socket.socket(); t.bind(("127.0.0.1", s.getsockname()[1])); print(s.getsockname()[1])'], { encoding: 'utf8' });
    return Number(r.stdout.trim());
  };
  const [sipPort, httpPort] = [free(), free()];
  const child = spawn(join(REPO, 'scripts/cluster'), ['--nodes', '2', '--database-url', databaseUrl, '--bin', helplineBin(), '--dir', dir], {
    cwd: REPO,
    env: childEnv({
      HELPLINE_EDGE_SIP: `127.0.0.1:${sipPort}`, HELPLINE_EDGE_HTTP: `127.0.0.1:${httpPort}`, HELPLINE_DRAIN_SECS: '1',
      HELPLINE_SECRET: SERVER_SECRET, HELPLINE_WEBHOOK_SECRET: WEBHOOK_SECRET, HELPLINE_FLOW_FILE: alwaysOpenFlow(dir),
    }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const log = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      log.push(line);
      if (process.env.TEST_LOG) process.stderr.write(`[cluster] ${line}\n`);
    });
  }
  await new Promise((resolveUp, reject) => {
    const timer = setTimeout(() => reject(new Error(`scripts/cluster did not come up in 120 s:\n${log.join('\n')}`)), 120_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`scripts/cluster exited with ${code}:\n${log.join('\n')}`));
    });
    const poll = setInterval(() => {
      if (existsSync(join(dir, 'ready'))) {
        clearInterval(poll);
        clearTimeout(timer);
        resolveUp();
      }
    }, 100);
    child.once('exit', () => clearInterval(poll));
  });
  child.removeAllListeners('exit');
  const server = new Server({ child, dir, addr: `127.0.0.1:${httpPort}`, databaseUrl, settings: {}, log });
  return {
    server,
    sip: { host: '127.0.0.1', port: sipPort },
    dir,
    /** SIGTERM: the script drains and stops every part it started (give it the time). */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
