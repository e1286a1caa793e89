// Calling a caller back from the console ("Richiama" / "Call back", docs/operators.md): the
// microphone (the phone's, asked once), one RTCPeerConnection whose offer goes to
// `POST /api/callbacks/{id}/call` (the server claims the request, opens the caller's number
// inside itself and dials it over the SIP trunk, or has the carrier dial it and then ring this
// leg, docs/operators.md; the page never sees the number), ringback
// played here while the call rings (425 Hz, 1 s on, 4 s off: the Italian ring tone), the
// callee's audio once answered, the attempt's state read from `GET /api/callbacks/{id}/call`
// until it is over, and how it ended said in the page.

import { microphone } from './phone.js';

const POLL_MS = 1000;
const ICE_GATHER_WAIT_MS = 500;

const C = {
  /** The callback being called, its connection, its state (`dialing`, `ringing`, `talking`). */
  id: null,
  pc: null,
  state: null,
  poll: null,
  ring: null,
  audio: null,
};

let hooks = { api: async () => ({ ok: false }), t: (k) => k, changed: () => {}, iceServers: () => [] };

/** `api(method, path, body)`, `t(key, args)`, `changed(message?)` (re-render, say a result), `iceServers()`. */
export function init(h) {
  hooks = { ...hooks, ...h };
}

export const callback = C;

/** Whether a callback is being called from this page. */
export function active() {
  return C.id !== null;
}

/** Places the callback `id`; `null` when placed, otherwise the message to show. */
export async function call(id) {
  if (C.id !== null) return hooks.t('callbacks.busy');
  const mic = await microphone();
  if (!mic) return hooks.t('callbacks.no_microphone');
  const pc = new RTCPeerConnection({ iceServers: hooks.iceServers(), bundlePolicy: 'max-bundle' });
  for (const track of mic.getAudioTracks()) pc.addTrack(track, mic);
  pc.ontrack = (e) => {
    if (!C.audio) {
      C.audio = document.createElement('audio');
      C.audio.id = 'callback-audio';
      C.audio.autoplay = true;
      C.audio.hidden = true;
      document.body.append(C.audio);
    }
    C.audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    C.audio.play().catch(() => {});
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  await gathered(pc);
  const r = await hooks.api('POST', `/api/callbacks/${encodeURIComponent(id)}/call`, { sdp: pc.localDescription.sdp });
  if (!r.ok) {
    pc.close();
    return r.data?.message ?? hooks.t('error.generic', { message: r.status });
  }
  try {
    await pc.setRemoteDescription({ type: 'answer', sdp: r.data.sdp });
  } catch {
    pc.close();
    return hooks.t('callbacks.phone_failed');
  }
  C.id = id;
  C.pc = pc;
  C.state = 'dialing';
  ringback(true);
  C.poll = setInterval(follow, POLL_MS);
  hooks.changed();
  return null;
}

/** The operator hangs up (the server sends the BYE or CANCEL; closing the connection does too). */
export async function hangUp() {
  if (C.id === null) return;
  await hooks.api('POST', `/api/callbacks/${encodeURIComponent(C.id)}/hangup`, {});
  C.pc?.close();
}

async function follow() {
  const id = C.id;
  if (id === null) return;
  const r = await hooks.api('GET', `/api/callbacks/${encodeURIComponent(id)}/call`);
  if (!r.ok || C.id !== id) return;
  const st = r.data;
  if (st.call_state) {
    if (st.call_state !== C.state) {
      C.state = st.call_state;
      ringback(C.state !== 'talking');
      hooks.changed();
    }
    return;
  }
  // The attempt is over: how it ended.
  end();
  const result = st.last_result ?? 'unknown';
  let message;
  if (st.status === 'done') message = hooks.t('callbacks.result.reached');
  else if (st.status === 'failed') message = hooks.t('callbacks.result.unreachable', { n: st.attempts });
  else message = hooks.t('callbacks.result.retry', { why: hooks.t(`callbacks.why.${result}`), n: st.attempts, max: st.max_attempts });
  hooks.changed(message);
}

function end() {
  clearInterval(C.poll);
  ringback(false);
  C.pc?.close();
  if (C.audio) C.audio.srcObject = null;
  Object.assign(C, { id: null, pc: null, state: null, poll: null });
}

/** The ring tone, made here (a trunk's own early media, if any, also plays through the call). */
function ringback(on) {
  if (!on) {
    if (C.ring) {
      clearInterval(C.ring.timer);
      C.ring.ctx.close().catch(() => {});
      C.ring = null;
    }
    return;
  }
  if (C.ring) return;
  try {
    const ctx = new AudioContext();
    const gain = ctx.createGain();
    gain.gain.value = 0;
    const osc = ctx.createOscillator();
    osc.frequency.value = 425;
    osc.connect(gain).connect(ctx.destination);
    osc.start();
    const cycle = () => {
      const t = ctx.currentTime;
      gain.gain.setValueAtTime(0.15, t);
      gain.gain.setValueAtTime(0, t + 1);
    };
    cycle();
    C.ring = { ctx, timer: setInterval(cycle, 5000) };
  } catch {
    C.ring = null;
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    };
    const check = () => { if (pc.iceGatheringState === 'complete') done(); };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(done, ICE_GATHER_WAIT_MS);
  });
}
