// A small real SIP caller over UDP (node's dgram): INVITE with a G.711 μ-law offer, ACK, BYE in
// both directions, RFC 4733 keys, a tone sent as RTP every 20 ms and every RTP packet received
// recorded. Enough of RFC 3261 for one call against the helpline's SIP adapter, and no more.
// (PJSIP's pjsua2 does not build from PyPI; sipp cannot record what it receives.)

import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';

const RATE = 8000;

/** μ-law encoding of one 16-bit sample (G.711). */
export function ulawEncode(sample) {
  const BIAS = 0x84;
  const CLIP = 32635;
  let sign = (sample >> 8) & 0x80;
  if (sign) sample = -sample;
  if (sample > CLIP) sample = CLIP;
  sample += BIAS;
  let exponent = 7;
  for (let mask = 0x4000; (sample & mask) === 0 && exponent > 0; mask >>= 1) exponent--;
  const mantissa = (sample >> (exponent + 3)) & 0x0f;
  return ~(sign | (exponent << 4) | mantissa) & 0xff;
}

export function ulawDecode(byte) {
  const u = ~byte & 0xff;
  const sign = u & 0x80;
  const exponent = (u >> 4) & 0x07;
  const mantissa = u & 0x0f;
  const sample = (((mantissa << 3) + 0x84) << exponent) - 0x84;
  return sign ? -sample : sample;
}

/** The power of `freq` in `samples` (Goertzel), normalised by the signal's energy. */
export function goertzel(samples, rate, freq) {
  const k = (2 * Math.PI * freq) / rate;
  const coeff = 2 * Math.cos(k);
  let s1 = 0;
  let s2 = 0;
  let energy = 0;
  for (const x of samples) {
    const s = x + coeff * s1 - s2;
    s2 = s1;
    s1 = s;
    energy += x * x;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  return energy > 0 ? power / (energy * samples.length / 2) : 0;
}

/** Binds a UDP socket to a free port of 127.0.0.1. */
export function bindLoopback(socket) {
  return new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
}

/** The value of the header `name` (any case) in the SIP message `text`; undefined without it. */
export function sipHeader(text, name) {
  const line = text.split('\r\n').find((l) => l.toLowerCase().startsWith(`${name.toLowerCase()}:`));
  return line?.slice(name.length + 1).trim();
}

export class SipCaller {
  /** `target`: the Request-URI to dial (default: the helpline's number at `server`). */
  constructor({ server, from = '+393331234567', toneHz = 440, target }) {
    this.server = server; // { host, port }
    this.target = target ?? `sip:803001@${server.host}:${server.port}`;
    this.from = from;
    this.toneHz = toneHz;
    this.callId = `${randomBytes(8).toString('hex')}@caller.test`;
    this.tag = randomBytes(4).toString('hex');
    this.cseq = 1;
    this.received = []; // { at, pt, seq, ts, ssrc, payload }
    this.byeReceived = false;
    this.responses = [];
    this.waiters = [];
    this.rtpSeq = Math.floor(Math.random() * 30000);
    this.rtpTs = Math.floor(Math.random() * 1e9);
    this.ssrc = Math.floor(Math.random() * 0xffffffff);
    this.phase = 0;
  }

  /** A caller built with `options` (the constructor's) whose sockets are bound. */
  static async started(options) {
    const caller = new SipCaller(options);
    await caller.start();
    return caller;
  }

  async start() {
    this.sip = dgram.createSocket('udp4');
    this.rtp = dgram.createSocket('udp4');
    await bindLoopback(this.sip);
    await bindLoopback(this.rtp);
    this.sipPort = this.sip.address().port;
    this.rtpPort = this.rtp.address().port;
    this.sip.on('message', (m) => this.onSip(m.toString('latin1')));
    this.rtp.on('message', (m, rinfo) => this.onRtp(m, rinfo));
  }

  sendSip(text) {
    this.sip.send(Buffer.from(text, 'latin1'), this.server.port, this.server.host);
  }

  request(method, { body = '', contentType } = {}) {
    const branch = `z9hG4bK${randomBytes(6).toString('hex')}`;
    const cseq = method === 'ACK' ? this.inviteCseq : this.cseq++;
    const to = this.toTag ? `<${this.target}>;tag=${this.toTag}` : `<${this.target}>`;
    // Through a proxy that record-routed the call (Kamailio), the dialog's later requests go to
    // the callee's Contact along the route set (RFC 3261 12.2.1.1), by way of the proxy.
    const routed = method !== 'INVITE' && this.routeSet?.length > 0;
    const lines = [
      `${method} ${routed ? this.remoteTarget : this.target} SIP/2.0`,
      ...(routed ? this.routeSet.map((r) => `Route: ${r}`) : []),
      `Via: SIP/2.0/UDP 127.0.0.1:${this.sipPort};branch=${branch};rport`,
      'Max-Forwards: 70',
      `From: <sip:${this.from}@127.0.0.1:${this.sipPort}>;tag=${this.tag}`,
      `To: ${to}`,
      `Call-ID: ${this.callId}`,
      `CSeq: ${cseq} ${method}`,
      `Contact: <sip:caller@127.0.0.1:${this.sipPort}>`,
    ];
    if (contentType) lines.push(`Content-Type: ${contentType}`);
    lines.push(`Content-Length: ${Buffer.byteLength(body, 'latin1')}`, '', body);
    if (method === 'INVITE') this.inviteCseq = cseq;
    this.sendSip(lines.join('\r\n'));
  }

  /** INVITE, then ACK on the 200 OK; resolves once answered. */
  async call() {
    const sdp = [
      'v=0', `o=caller 1 1 IN IP4 127.0.0.1`, 's=-', 'c=IN IP4 127.0.0.1', 't=0 0',
      `m=audio ${this.rtpPort} RTP/AVP 0 101`, 'a=rtpmap:0 PCMU/8000', 'a=rtpmap:101 telephone-event/8000',
      'a=fmtp:101 0-15', 'a=ptime:20', 'a=sendrecv', '',
    ].join('\r\n');
    this.request('INVITE', { body: sdp, contentType: 'application/sdp' });
    const ok = await this.waitFor((r) => r.status === 200 && r.cseq.endsWith('INVITE'), 20_000);
    this.toTag = /;tag=([^;\s>]+)/.exec(ok.headers.to ?? '')?.[1];
    this.routeSet = [...ok.recordRoutes].reverse();
    this.remoteTarget = /<([^>]+)>/.exec(ok.headers.contact ?? '')?.[1] ?? this.target;
    const remote = /m=audio (\d+)/.exec(ok.body)?.[1];
    const host = /c=IN IP4 ([\d.]+)/.exec(ok.body)?.[1];
    this.remoteRtp = { host, port: Number(remote) };
    this.request('ACK');
    this.startTone();
  }

  startTone() {
    const samplesPerPacket = RATE / 50;
    this.toneTimer = setInterval(() => {
      if (this.dtmf) return this.sendDtmfPacket();
      const payload = Buffer.alloc(samplesPerPacket);
      for (let i = 0; i < samplesPerPacket; i++) {
        const v = Math.round(8000 * Math.sin(this.phase));
        this.phase += (2 * Math.PI * this.toneHz) / RATE;
        payload[i] = ulawEncode(v);
      }
      this.sendRtp(0, payload, false);
      this.rtpTs = (this.rtpTs + samplesPerPacket) >>> 0;
    }, 20);
  }

  sendRtp(pt, payload, marker) {
    const header = Buffer.alloc(12);
    header[0] = 0x80;
    header[1] = (marker ? 0x80 : 0) | pt;
    header.writeUInt16BE(this.rtpSeq & 0xffff, 2);
    header.writeUInt32BE(this.rtpTs >>> 0, 4);
    header.writeUInt32BE(this.ssrc >>> 0, 8);
    this.rtpSeq = (this.rtpSeq + 1) & 0xffff;
    this.rtp.send(Buffer.concat([header, payload]), this.remoteRtp.port, this.remoteRtp.host);
  }

  /** An RFC 4733 key: 5 packets of 20 ms, then 3 end packets, instead of the tone. */
  press(key) {
    const event = '0123456789*#'.indexOf(key);
    this.dtmf = { event, n: 0 };
  }

  sendDtmfPacket() {
    const d = this.dtmf;
    const end = d.n >= 5;
    const duration = Math.min(d.n + 1, 6) * 160;
    const payload = Buffer.from([d.event, (end ? 0x80 : 0) | 10, duration >> 8, duration & 0xff]);
    this.sendRtp(101, payload, d.n === 0);
    d.n++;
    if (d.n >= 8) {
      this.dtmf = null;
      this.rtpTs = (this.rtpTs + 160 * 8) >>> 0;
    }
  }

  onRtp(message, rinfo) {
    if (message.length < 12) return;
    this.received.push({
      at: Date.now(), pt: message[1] & 0x7f, seq: message.readUInt16BE(2), ts: message.readUInt32BE(4),
      ssrc: message.readUInt32BE(8), payload: message.subarray(12), from: rinfo.port,
    });
  }

  /** The μ-law audio received since `since` (ms), decoded. */
  audioSince(since) {
    const out = [];
    for (const p of this.received) {
      if (p.at < since || p.pt !== 0) continue;
      for (const b of p.payload) out.push(ulawDecode(b));
    }
    return out;
  }

  onSip(text) {
    const [head, body = ''] = text.split('\r\n\r\n');
    const lines = head.split('\r\n');
    const headers = {};
    const recordRoutes = [];
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      if (i <= 0) continue;
      const name = l.slice(0, i).trim().toLowerCase();
      headers[name] = l.slice(i + 1).trim();
      if (name === 'record-route') recordRoutes.push(...headers[name].split(/,(?=\s*<)/).map((r) => r.trim()));
    }
    if (lines[0].startsWith('SIP/2.0')) {
      const response = { status: Number(lines[0].split(' ')[1]), cseq: headers.cseq ?? '', headers, body, recordRoutes };
      this.responses.push(response);
      this.waiters = this.waiters.filter((w) => !(w.match(response) && (w.resolve(response), true)));
      return;
    }
    // A request from the helpline: answer it (200 OK), BYE ends the call.
    const method = lines[0].split(' ')[0];
    const reply = [
      'SIP/2.0 200 OK', `Via: ${headers.via}`, `From: ${headers.from}`, `To: ${headers.to}`,
      `Call-ID: ${headers['call-id']}`, `CSeq: ${headers.cseq}`, 'Content-Length: 0', '', '',
    ].join('\r\n');
    this.sendSip(reply);
    if (method === 'BYE') {
      this.byeReceived = true;
      this.stopTone();
      for (const w of this.byeWaiters ?? []) w();
    }
  }

  waitFor(match, ms) {
    const found = this.responses.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no such SIP response in time')), ms);
      this.waiters.push({ match, resolve: (r) => { clearTimeout(timer); resolve(r); } });
    });
  }

  waitForBye(ms) {
    if (this.byeReceived) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no BYE in time')), ms);
      this.byeWaiters = [...(this.byeWaiters ?? []), () => { clearTimeout(timer); resolve(); }];
    });
  }

  stopTone() {
    clearInterval(this.toneTimer);
  }

  async hangUp() {
    this.stopTone();
    if (!this.byeReceived) this.request('BYE');
    await new Promise((r) => setTimeout(r, 200));
  }

  close() {
    this.stopTone();
    this.sip?.close();
    this.rtp?.close();
  }
}
