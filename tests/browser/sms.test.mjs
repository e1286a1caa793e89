// "Invia per SMS" (docs/operators.md, "Sending the services by SMS"), in real Chromium: a SIP
// caller from an Italian mobile reaches the operator, who refers two services found in the
// directory and presses "Invia per SMS". The preview holds the services' names and phones, their
// alphabet and segment count; "Conferma e invia", from the keyboard, sends it, and the test's SIP
// trunk (UDP, below) receives a MESSAGE to the caller's number whose body is exactly the text the
// operator saw. Then the trunk refuses the next one (403): the page says so plainly, and the call
// goes on.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { join } from 'node:path';
import { SipCaller, bindLoopback, sipHeader } from './lib/sipcaller.mjs';
import { REPO, goOnline, screenshot, sipAddr } from './lib/server.mjs';
import { Scene, callerReachesPage, endCall, newPage } from './lib/scene.mjs';

/** The trunk's end of text messages: takes `MESSAGE`s, answering 200 or, once told, a refusal. */
class MessageTrunk {
  constructor() {
    this.sip = dgram.createSocket('udp4');
    this.messages = [];
    this.refuseNext = null;
    this.waiters = [];
  }

  async start() {
    await bindLoopback(this.sip);
    this.sip.on('message', (msg, rinfo) => this.onSip(msg, rinfo));
  }

  get uri() {
    return `sip:127.0.0.1:${this.sip.address().port}`;
  }

  onSip(raw, rinfo) {
    const text = raw.toString('latin1');
    const [method, uri] = text.split('\r\n')[0].split(' ');
    if (method !== 'MESSAGE') return;
    const cseq = sipHeader(text, 'CSeq');
    const callId = sipHeader(text, 'Call-ID');
    let status = [200, 'OK'];
    if (!this.messages.some((m) => m.callId === callId && m.cseq === cseq)) {
      const split = raw.indexOf('\r\n\r\n');
      const body = raw.subarray(split + 4).toString('utf8');
      const m = { uri, callId, cseq, contentType: sipHeader(text, 'Content-Type'), body, refused: this.refuseNext };
      this.messages.push(m);
      this.refuseNext = null;
      for (const w of this.waiters.splice(0)) w(m);
    }
    const seen = this.messages.find((m) => m.callId === callId && m.cseq === cseq);
    if (seen.refused) status = seen.refused;
    const lines = [`SIP/2.0 ${status[0]} ${status[1]}`, `Via: ${sipHeader(text, 'Via')}`, `From: ${sipHeader(text, 'From')}`,
      `To: ${sipHeader(text, 'To')};tag=trunk`, `Call-ID: ${callId}`, `CSeq: ${cseq}`, 'Content-Length: 0', '', ''];
    this.sip.send(Buffer.from(lines.join('\r\n'), 'latin1'), rinfo.port, rinfo.address);
  }

  next(timeoutMs) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no MESSAGE reached the trunk')), timeoutMs);
      this.waiters.push((m) => {
        clearTimeout(timer);
        resolve(m);
      });
    });
  }

  close() {
    this.sip.close();
  }
}

describe('sending the referred services by SMS', () => {
  let server;
  let browser;
  const trunk = new MessageTrunk();
  const scene = new Scene('helpline-sms-');

  before(async () => {
    await trunk.start();
    server = await scene.startServer({
      env: {
        HELPLINE_TRUNK_URI: trunk.uri,
        HELPLINE_TRUNK_USER: '803001',
        HELPLINE_TRUNK_PASSWORD: 'browser-trunk-pw',
        HELPLINE_TRUNK_CALLER_ID: '803001',
        HELPLINE_SMS_VIA: 'trunk',
        HELPLINE_SMS_SENDER: '+39803001',
      },
    });
    server.importDirectory(join(REPO, 'tests/fixtures/directory/good'));
    browser = await scene.toneBrowser('op-1khz.wav', 1000);
  });

  after(async () => {
    await scene.close();
    trunk.close();
  });

  test('the operator sees the text, confirms, and the trunk receives exactly it; a refusal is told', async () => {
    const anna = server.addUser({ name: 'anna', languages: ['it'] });
    const { ctx, page: op } = await newPage(browser, { height: 1000 });
    await goOnline(op, server, anna);
    const caller = await SipCaller.started({ server: sipAddr(server), from: '+393331234567', toneHz: 440 });
    try {
      await callerReachesPage(caller, op);

      // No referral yet: no button.
      assert.equal(await op.locator('#sms-open').isVisible(), false);
      await op.locator('#search-q').fill('mediazione');
      const cards = op.locator('#results li.result');
      await cards.first().waitFor({ state: 'visible', timeout: 15_000 });
      assert.ok(await cards.count() >= 2, 'two services match');
      const names = [];
      for (const i of [0, 1]) {
        const card = cards.nth(i);
        names.push((await card.locator('h4').textContent()).trim());
        await card.getByRole('button', { name: /Indica al chiamante/ }).click();
        await op.locator('#referrals li', { hasText: names[i] }).waitFor();
      }

      const open = op.getByRole('button', { name: 'Invia per SMS', exact: true });
      await open.waitFor({ state: 'visible' });
      await open.click();
      const preview = op.locator('#sms-preview');
      await preview.waitFor({ state: 'visible', timeout: 10_000 });
      const shown = await op.locator('#sms-text').textContent();
      for (const name of names) assert.ok(shown.includes(name), `the preview names ${name}: ${shown}`);
      assert.ok(shown.includes('+39 02 8846 1234'), `the preview has the service's phone: ${shown}`);
      assert.ok(shown.includes('integrazionemigranti.gov.it'), `the preview ends with the Portale: ${shown}`);
      assert.match(await op.locator('#sms-facts').textContent(), /GSM-7, [1-9]\d* SMS/);
      assert.equal(await op.evaluate(() => document.activeElement?.id), 'sms-confirm', 'the confirm button has the focus');
      await screenshot(op, 'sms-1-preview');

      // Confirmed from the keyboard: the trunk receives the text the operator saw, to the caller.
      const arriving = trunk.next(20_000);
      await op.keyboard.press('Enter');
      const message = await arriving;
      assert.equal(message.body, shown);
      assert.match(message.uri, /^sip:\+393331234567@127\.0\.0\.1/);
      assert.match(message.contentType, /^text\/plain;\s*charset=UTF-8/i);
      await op.locator('#sms-status', { hasText: 'SMS inviato' }).waitFor({ timeout: 10_000 });
      assert.equal(await preview.isVisible(), false);
      assert.ok(!(await op.content()).includes('3331234567'), 'the caller\'s number never reaches the page');
      await screenshot(op, 'sms-2-sent');

      // The trunk refuses the next one: said plainly, and the call goes on.
      trunk.refuseNext = [403, 'Forbidden'];
      await open.click();
      await preview.waitFor({ state: 'visible', timeout: 10_000 });
      await op.getByRole('button', { name: 'Conferma e invia' }).click();
      const error = op.locator('#sms-error');
      await error.waitFor({ state: 'visible', timeout: 20_000 });
      assert.match(await error.textContent(), /SMS non inviato: .*the trunk refused it: 403 Forbidden/);
      assert.equal(trunk.messages.length, 2);
      assert.equal(await op.evaluate(() => document.getElementById('phone-state')?.dataset.state), 'connected');
      await screenshot(op, 'sms-3-refused');

      await endCall(op, caller);
    } finally {
      caller.close();
      await ctx.close();
    }
  });
});
