// "Chiudi interprete" / "Hang up interpreter" in the operator's page (docs/operators.md, "Dialling
// an outside interpreter through the trunk"): a real SIP caller reaches the operator, who answers
// in the browser, opens "Aggiungi mediatore" with the keyboard (Alt+M) and dials an outside
// interpreter's number. A SIP trunk stand-in (UDP, no credentials configured) answers; the page
// shows "Chiudi interprete" once the `interpreter` message says dialling, the operator presses it
// with the keyboard, the trunk gets the BYE and the button goes. The audio of the three-way call
// is proven by tones in tests/e2e/interpreter.rs.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { SipCaller, bindLoopback, sipHeader } from './lib/sipcaller.mjs';
import { Scene, callerReachesPage, newPage } from './lib/scene.mjs';
import { goOnline, screenshot, sipAddr } from './lib/server.mjs';

const NUMBER = '+390298765431';

/** A SIP trunk that answers every INVITE and records what it receives. */
class TrunkStandIn {
  async start() {
    this.socket = dgram.createSocket('udp4');
    await bindLoopback(this.socket);
    this.port = this.socket.address().port;
    this.requests = [];
    this.waiters = [];
    this.socket.on('message', (m, rinfo) => this.onMessage(m.toString('latin1'), rinfo));
  }

  respond(req, rinfo, status, reason, body = '') {
    const to = sipHeader(req, 'To');
    const lines = [
      `SIP/2.0 ${status} ${reason}`,
      `Via: ${sipHeader(req, 'Via')}`,
      `From: ${sipHeader(req, 'From')}`,
      `To: ${to.includes('tag=') ? to : `${to};tag=interp1`}`,
      `Call-ID: ${sipHeader(req, 'Call-ID')}`,
      `CSeq: ${sipHeader(req, 'CSeq')}`,
      `Contact: <sip:interpreter@127.0.0.1:${this.port}>`,
    ];
    if (body) lines.push('Content-Type: application/sdp');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`, '', body);
    this.socket.send(Buffer.from(lines.join('\r\n'), 'latin1'), rinfo.port, rinfo.address);
  }

  onMessage(text, rinfo) {
    const [method, uri] = text.split(' ');
    if (method === 'SIP/2.0') return;
    this.requests.push({ method, uri, text });
    if (method === 'INVITE') {
      const sdp = ['v=0', 'o=trunk 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
        `m=audio ${this.port + 1} RTP/AVP 8`, 'a=rtpmap:8 PCMA/8000', ''].join('\r\n');
      this.respond(text, rinfo, 180, 'Ringing');
      this.respond(text, rinfo, 200, 'OK', sdp);
    } else if (method === 'BYE') {
      this.respond(text, rinfo, 200, 'OK');
    }
    this.waiters = this.waiters.filter((w) => !(w.method === method && (w.resolve(), true)));
  }

  waitFor(method, ms) {
    if (this.requests.some((r) => r.method === method)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${method} in ${ms} ms`)), ms);
      this.waiters.push({ method, resolve: () => { clearTimeout(timer); resolve(); } });
    });
  }

  close() {
    this.socket?.close();
  }
}

describe('an outside interpreter on a call', () => {
  const scene = new Scene('helpline-interpreter-');
  let server;
  let browser;
  const trunk = new TrunkStandIn();

  before(async () => {
    await trunk.start();
    server = await scene.startServer({
      env: { HELPLINE_TRUNK_URI: `sip:127.0.0.1:${trunk.port}`, HELPLINE_TRUNK_CALLER_ID: '390200000000' },
    });
    browser = await scene.toneBrowser('op-1khz.wav', 1000);
  });

  after(async () => {
    await scene.close();
    trunk.close();
  });

  test('dialled from the mediator list, hung up with "Chiudi interprete" from the keyboard', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const { ctx, page: op } = await newPage(browser);
    await goOnline(op, server, anna);
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await callerReachesPage(caller, op);
      const hangUp = op.getByRole('button', { name: 'Chiudi interprete' });
      assert.equal(await hangUp.isVisible(), false, 'no interpreter yet');

      // The interpreter's number in the mediator list, with the keyboard.
      await op.keyboard.press('Alt+M');
      const field = op.getByLabel(/interprete esterno/);
      await field.waitFor({ state: 'visible', timeout: 10_000 });
      await field.focus();
      await op.keyboard.type(NUMBER);
      await op.keyboard.press('Enter');
      await trunk.waitFor('INVITE', 10_000);
      assert.equal(trunk.requests.find((r) => r.method === 'INVITE').uri, `sip:${NUMBER}@127.0.0.1`);
      await hangUp.waitFor({ state: 'visible', timeout: 10_000 });
      await screenshot(op, 'interpreter-1-on-the-call');

      // "Chiudi interprete" with the keyboard: the trunk gets the BYE, the button goes.
      await hangUp.focus();
      await op.keyboard.press('Enter');
      await trunk.waitFor('BYE', 10_000);
      await hangUp.waitFor({ state: 'hidden', timeout: 10_000 });
      assert.ok(!caller.byeReceived, 'the caller is still on the line');
      assert.equal(await op.locator('#call').isVisible(), true, 'the call goes on');
    } finally {
      caller.close();
      await ctx.close();
    }
  });
});
