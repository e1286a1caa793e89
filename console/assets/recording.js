// Recording with consent (docs/operators.md, "Recording a call"): every caller hears the recording
// notice and may refuse with its key; the operator marks a refusal the caller speaks ("Il chiamante
// rifiuta" / "Caller refuses"). While the caller has not refused, "Registra" / "Record" (Alt+R)
// records the call and "Interrompi registrazione" / "Stop recording" stops it; once the caller
// refused, the button is disabled (and the server refuses too). The server's side is
// console/src/operators/recording.rs.

import { t } from './i18n.js';

const $ = (id) => document.getElementById(id);

const R = {
  /** The call whose status is shown. */
  call: null,
  /** `caller`, `operator` or null. */
  refused: null,
  /** The id of the recording under way, or null. */
  recording: null,
  busy: false,
};

let hooks = {
  api: async () => ({ ok: false }),
  announce: () => {},
  alertBox: () => {},
  /** The live call I hold on screen, or null. */
  callId: () => null,
};

export function init(h) {
  hooks = { ...hooks, ...h };
  $('record-toggle').addEventListener('click', toggle);
  $('record-refused').addEventListener('click', refuse);
  document.addEventListener('keydown', (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey || e.code !== 'KeyR') return;
    if (!$('record-toggle').hidden && !$('record-toggle').disabled) {
      e.preventDefault();
      toggle();
    }
  });
}

/** Shows the controls for the call on screen; a new call's status is fetched. */
export function render() {
  const call = hooks.callId();
  if (call !== R.call) {
    R.call = call;
    R.refused = null;
    R.recording = null;
    if (call) load(call);
  }
  const button = $('record-toggle');
  button.hidden = !call;
  $('record-refused').hidden = !call || Boolean(R.refused);
  button.disabled = Boolean(R.refused) || R.busy;
  button.setAttribute('aria-pressed', R.recording ? 'true' : 'false');
  $('record-label').textContent = t(R.recording ? 'recording.stop' : 'recording.start');
  $('record-status').textContent = !call
    ? ''
    : R.refused
      ? t(`recording.refused.${R.refused}`)
      : R.recording ? t('recording.on') : '';
}

async function load(call) {
  const r = await hooks.api('GET', `/api/calls/${encodeURIComponent(call)}/recording`);
  if (r.ok && R.call === call) {
    R.refused = r.data?.refused ?? null;
    R.recording = r.data?.recording ?? null;
    render();
  }
}

async function toggle() {
  const call = R.call;
  if (!call || R.refused || R.busy) return;
  R.busy = true;
  render();
  const path = `/api/calls/${encodeURIComponent(call)}/recording`;
  const r = await hooks.api(R.recording ? 'DELETE' : 'POST', path);
  R.busy = false;
  if (!r.ok) {
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    await load(call);
    return;
  }
  R.recording = R.recording ? null : r.data?.recording ?? 'on';
  render();
  hooks.announce(t(R.recording ? 'recording.on' : 'recording.off'), true);
}

async function refuse() {
  const call = R.call;
  if (!call) return;
  const r = await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/recording/refusal`);
  if (!r.ok) {
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    return;
  }
  R.refused = r.data?.refused ?? 'operator';
  R.recording = null;
  render();
  hooks.announce(t(`recording.refused.${R.refused}`), true);
}
