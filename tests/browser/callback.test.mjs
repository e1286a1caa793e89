// Calling a caller back from the console, in real Chromium: a SIP caller out of hours asks for a
// callback (its number is sealed by the server); the operator clicks "Richiama" in the callback
// list; the test's SIP trunk (UDP, below) challenges the INVITE (407), sees it again with
// credentials and the caller's number in the request URI, rings, answers and plays 440 Hz. The
// page shows "Squilla…" while it rings; once answered the page's audio holds the callee's 440 Hz
// and the trunk receives the operator's 1 kHz (Chromium's fake microphone) in A-law. "Riaggancia"
// sends BYE; the page says the callback reached the caller and the request leaves the list.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { SipCaller, bindLoopback, goertzel, sipHeader } from './lib/sipcaller.mjs';
import { closedFlow, screenshot, signIn, sipAddr } from './lib/server.mjs';
import { tonesOn } from './lib/audio.mjs';
import { Scene, newPage } from './lib/scene.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** G.711 A-law (ITU-T G.711), for the trunk's side. */
function alawEncode(sample) {
  let s = Math.max(-32768, Math.min(32767, sample));
  const sign = s >= 0 ? 0x80 : 0;
  if (s < 0) s = -s - 1;
  let exp = 7;
  for (let mask = 0x4000; (s & mask) === 0 && exp > 0; mask >>= 1) exp--;
  const mant = exp === 0 ? (s >> 4) & 0x0f : (s >> (exp + 3)) & 0x0f;
  return ((sign | (exp << 4) | mant) ^ 0x55) & 0xff;
}

function alawDecode(byte) {
  const a = byte ^ 0x55;
  const exp = (a & 0x70) >> 4;
  let mag = ((a & 0x0f) << 4) + 8;
  if (exp !== 0) mag = (mag + 0x100) << (exp - 1);
  return a & 0x80 ? mag : -mag;
}

/** The callee's end of the trunk: SIP over UDP, then 440 Hz A-law RTP, recording what it hears. */
class Trunk {
  constructor() {
    this.sip = dgram.createSocket('udp4');
    this.rtp = dgram.createSocket('udp4');
    this.invites = [];
    this.heard = [];
    this.byes = 0;
    this.timer = null;
  }

  async start() {
    await bindLoopback(this.sip);
    await bindLoopback(this.rtp);
    this.rtp.on('message', (msg) => {
      if (msg.length > 12 && (msg[1] & 0x7f) === 8) for (const b of msg.subarray(12)) this.heard.push(alawDecode(b));
    });
    this.sip.on('message', (msg, rinfo) => this.onSip(msg.toString('latin1'), rinfo));
  }

  get uri() {
    return `sip:127.0.0.1:${this.sip.address().port}`;
  }

  reply(req, rinfo, status, reason, extra = [], body = '') {
    const to = sipHeader(req, 'To');
    const lines = [`SIP/2.0 ${status} ${reason}`, `Via: ${sipHeader(req, 'Via')}`, `From: ${sipHeader(req, 'From')}`,
      `To: ${to.includes('tag=') || status === 100 ? to : `${to};tag=callee`}`, `Call-ID: ${sipHeader(req, 'Call-ID')}`,
      `CSeq: ${sipHeader(req, 'CSeq')}`, ...extra];
    if (body) lines.push('Content-Type: application/sdp');
    lines.push(`Content-Length: ${Buffer.byteLength(body)}`, '', body);
    this.sip.send(Buffer.from(lines.join('\r\n'), 'latin1'), rinfo.port, rinfo.address);
  }

  onSip(text, rinfo) {
    const [method, uri] = text.split('\r\n')[0].split(' ');
    if (method === 'INVITE') {
      if (this.invites.some((i) => i.cseq === sipHeader(text, 'CSeq'))) return; // a retransmission
      this.invites.push({ uri, cseq: sipHeader(text, 'CSeq'), proxyAuth: sipHeader(text, 'Proxy-Authorization'), body: text.split('\r\n\r\n')[1] });
      if (!sipHeader(text, 'Proxy-Authorization')) {
        this.reply(text, rinfo, 407, 'Proxy Authentication Required', ['Proxy-Authenticate: Digest realm="trunk", nonce="browser-n1"']);
        return;
      }
      this.reply(text, rinfo, 100, 'Trying');
      this.reply(text, rinfo, 180, 'Ringing');
      const sdp = text.split('\r\n\r\n')[1];
      const ip = /c=IN IP4 (\S+)/.exec(sdp)[1];
      const port = Number(/m=audio (\d+)/.exec(sdp)[1]);
      this.helplineRtp = { ip: ip === '0.0.0.0' ? '127.0.0.1' : ip, port };
      // Answer after ringing a while.
      setTimeout(() => {
        const answer = ['v=0', 'o=callee 1 1 IN IP4 127.0.0.1', 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
          `m=audio ${this.rtp.address().port} RTP/AVP 8`, 'a=rtpmap:8 PCMA/8000', ''].join('\r\n');
        this.reply(text, rinfo, 200, 'OK', [`Contact: <sip:callee@127.0.0.1:${this.sip.address().port}>`], answer);
      }, 2500);
    } else if (method === 'ACK' && !this.timer && this.helplineRtp && this.invites.length > 1) {
      this.answeredAt = Date.now();
      let n = 0;
      this.timer = setInterval(() => {
        const packet = Buffer.alloc(12 + 160);
        packet[0] = 0x80;
        packet[1] = 8 | (n === 0 ? 0x80 : 0);
        packet.writeUInt16BE(n & 0xffff, 2);
        packet.writeUInt32BE((n * 160) >>> 0, 4);
        packet.writeUInt32BE(0x4404, 8);
        for (let i = 0; i < 160; i++) packet[12 + i] = alawEncode(Math.round(8000 * Math.sin((2 * Math.PI * 440 * (n * 160 + i)) / 8000)));
        this.rtp.send(packet, this.helplineRtp.port, this.helplineRtp.ip);
        n++;
      }, 20);
    } else if (method === 'BYE') {
      this.byes++;
      clearInterval(this.timer);
      this.reply(text, rinfo, 200, 'OK');
    }
  }

  close() {
    clearInterval(this.timer);
    this.sip.close();
    this.rtp.close();
  }
}

describe('calling back', () => {
  let server;
  let browser;
  const trunk = new Trunk();
  const scene = new Scene('helpline-callback-');

  before(async () => {
    await trunk.start();
    server = await scene.startServer({
      env: {
        HELPLINE_FLOW_FILE: closedFlow(scene.dir),
        HELPLINE_TRUNK_URI: trunk.uri,
        HELPLINE_TRUNK_USER: '803001',
        HELPLINE_TRUNK_PASSWORD: 'browser-trunk-pw',
        HELPLINE_TRUNK_CALLER_ID: '803001',
      },
    });
    browser = await scene.toneBrowser('mic-1khz.wav', 1000, 30);
  });

  after(async () => {
    await scene.close();
    trunk.close();
  });

  test('"Richiama" calls the caller over the trunk: ringing, then tones both ways, then done', async () => {
    // The caller asks for a callback out of hours and hangs up (no message needed).
    const caller = await SipCaller.started({ server: sipAddr(server), toneHz: 440 });
    try {
      await caller.call();
      const deadline = Date.now() + 30_000;
      while (caller.audioSince(0).length < 800) {
        assert.ok(Date.now() < deadline, 'the Italian offer was not heard');
        await sleep(50);
      }
      caller.press('1');
      const pressed = Date.now();
      await sleep(400);
      while (caller.audioSince(pressed + 300).length < 800) {
        assert.ok(Date.now() < deadline + 30_000, 'the welcome was not heard');
        await sleep(50);
      }
      caller.press('1'); // out of hours: 1 is a callback
      // The beep (1 kHz) after the voicemail prompt, then a short message and #.
      let beep = false;
      while (!beep) {
        assert.ok(Date.now() < deadline + 90_000, 'no beep heard');
        await sleep(100);
        const recent = caller.audioSince(Date.now() - 300);
        beep = recent.length >= 1600 && goertzel(recent, 8000, 1000) > 0.4;
      }
      await sleep(1500);
      caller.press('#');
      await caller.waitForBye(60_000);
    } finally {
      caller.close();
    }

    const vera = server.addUser({ name: 'vera', languages: ['it'] });
    const { ctx, page } = await newPage(browser);
    await signIn(page, server, vera);
    await page.locator('#callbacks-refresh').click();
    const call = page.locator('#callbacks li').first().getByRole('button', { name: 'Richiama' });
    await call.waitFor({ timeout: 10_000 });
    await call.click();
    await page.locator('#callbacks').getByText('Squilla…').waitFor({ timeout: 10_000 });
    await screenshot(page, 'callback-ringing');
    assert.equal(trunk.invites.length, 2, 'challenged, then with credentials');
    assert.equal(trunk.invites[1].uri, 'sip:+393331234567@127.0.0.1', 'the caller\'s number, over the trunk');
    assert.match(trunk.invites[1].proxyAuth, /^Digest username="803001", realm="trunk", nonce="browser-n1", uri="sip:\+393331234567@127\.0\.0\.1", response="[0-9a-f]{32}", algorithm=MD5$/);
    const pageText = await page.locator('#callbacks').textContent();
    assert.doesNotMatch(pageText, /3331234567/, 'the page never shows the number');

    await page.locator('#callbacks').getByText('In conversazione').waitFor({ timeout: 15_000 });
    await page.locator('#callback-audio').waitFor({ state: 'attached' });
    const heardByPage = await tonesOn(page, 'callback-audio', [440, 1000]);
    assert.ok(heardByPage.p440 > 0.3 && heardByPage.p1000 < 0.05, `the page hears the callee: ${JSON.stringify(heardByPage)}`);
    const since = trunk.heard.length;
    await sleep(1500);
    const heardByCallee = trunk.heard.slice(since);
    const p1000 = goertzel(heardByCallee, 8000, 1000);
    const p440 = goertzel(heardByCallee, 8000, 440);
    assert.ok(heardByCallee.length > 4000 && p1000 > 0.3 && p440 < 0.05, `the callee hears the operator: 1 kHz ${p1000.toFixed(3)}, 440 Hz ${p440.toFixed(3)}`);
    await screenshot(page, 'callback-talking');

    await page.locator('#callbacks').getByRole('button', { name: 'Riaggancia' }).click();
    await page.getByText('Richiamata riuscita').first().waitFor({ timeout: 10_000 });
    assert.equal(trunk.byes, 1);
    await page.locator('#callbacks-empty').waitFor({ state: 'visible', timeout: 10_000 });
    await screenshot(page, 'callback-done');
    await ctx.close();
  });
});
