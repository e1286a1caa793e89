// "Invia per SMS" / "Send by SMS" (docs/operators.md, "Sending the services by SMS"): the services
// referred on the call, sent to the caller as the self-service readback writes them, in the
// caller's language. The button asks the server for the text (GET /api/calls/{id}/sms) and shows
// it with its alphabet and segment count; only "Conferma e invia" / "Confirm and send" sends it
// (POST, with the text seen). Why none can go (no sender, a withheld number, a landline…) and why
// one did not (the trunk refused, the carrier's error) are shown as they come. The caller's number
// never reaches the page. The server's side is console/src/operators/sms.rs.

import { t } from './i18n.js';

const $ = (id) => document.getElementById(id);

const M = {
  /** The call the controls are for. */
  call: null,
  /** The preview on screen (`{text, encoding, segments, units, via}`), or null. */
  preview: null,
  busy: false,
};

let hooks = {
  api: async () => ({ ok: false }),
  announce: () => {},
  /** The live call I hold on screen, or null. */
  callId: () => null,
  /** Whether the call has referrals. */
  hasReferrals: () => false,
};

export function init(h) {
  hooks = { ...hooks, ...h };
  $('sms-open').addEventListener('click', open);
  $('sms-confirm').addEventListener('click', confirm);
  $('sms-cancel').addEventListener('click', () => close(true));
  $('sms-preview').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      close(true);
    }
  });
}

const encodingName = (e) => (e === 'ucs2' ? 'UCS-2' : 'GSM-7');
const segmentsWord = (n) => t(n === 1 ? 'sms.segment' : 'sms.segments');

/** Shows the button for the call on screen; another call closes the preview. */
export function render() {
  const call = hooks.callId();
  if (call !== M.call) {
    M.call = call;
    M.preview = null;
    M.busy = false;
    $('sms-status').textContent = '';
    $('sms-error').textContent = '';
  }
  const button = $('sms-open');
  button.hidden = !call || !hooks.hasReferrals();
  button.disabled = M.busy;
  button.setAttribute('aria-expanded', M.preview ? 'true' : 'false');
  $('sms-preview').hidden = !M.preview;
  $('sms-confirm').disabled = M.busy;
  if (M.preview) {
    $('sms-text').textContent = M.preview.text;
    $('sms-facts').textContent = t('sms.facts', {
      encoding: encodingName(M.preview.encoding),
      segments: M.preview.segments,
      segments_word: segmentsWord(M.preview.segments),
      units: M.preview.units,
      via: M.preview.via,
    });
  }
}

function fail(key, r) {
  const message = r.data?.message ?? String(r.status);
  $('sms-status').textContent = '';
  $('sms-error').textContent = t(key, { message });
}

async function open() {
  const call = M.call;
  if (!call || M.busy) return;
  M.busy = true;
  $('sms-error').textContent = '';
  $('sms-status').textContent = t('sms.loading');
  render();
  const r = await hooks.api('GET', `/api/calls/${encodeURIComponent(call)}/sms`);
  if (M.call !== call) return;
  M.busy = false;
  if (!r.ok) {
    M.preview = null;
    fail('sms.not_shown', r);
    render();
    return;
  }
  M.preview = r.data;
  $('sms-status').textContent = '';
  render();
  $('sms-confirm').focus();
}

function close(refocus) {
  M.preview = null;
  render();
  if (refocus) $('sms-open').focus();
}

async function confirm() {
  const call = M.call;
  const preview = M.preview;
  if (!call || !preview || M.busy) return;
  M.busy = true;
  $('sms-error').textContent = '';
  $('sms-status').textContent = t('sms.sending');
  render();
  const r = await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/sms`, { text: preview.text });
  if (M.call !== call) return;
  M.busy = false;
  M.preview = null;
  render();
  $('sms-open').focus();
  if (!r.ok) {
    fail('sms.failed', r);
    return;
  }
  const message = t('sms.sent', {
    segments: r.data.segments,
    segments_word: segmentsWord(r.data.segments),
    encoding: encodingName(r.data.encoding),
    detail: r.data.detail,
  });
  $('sms-status').textContent = message;
  hooks.announce(message, true);
}
