// The browser phone (docs/media.md): the microphone, asked once and saying why; one
// RTCPeerConnection per call whose SDP offer goes to the server over the console socket
// (`phone_offer`, answered by `phone_answer`; the server is ICE-lite, so its one candidate is in
// the answer and no candidates travel separately); the caller's audio played; a level meter, mute
// (the page's own), hold (the server plays the hold audio), the call timer and the media state.
// An ICE restart (`restart: true`) restores the media after the socket came back.

const ICE_GATHER_WAIT_MS = 500;

const P = {
  /** The microphone's stream, once granted. */
  mic: null,
  /** `refused` | `missing` | `failed` when the microphone could not be had. */
  micError: null,
  pc: null,
  callId: null,
  state: null,
  muted: false,
  held: false,
  connectedAt: null,
  levelTimer: null,
  analyser: null,
};

let hooks = { send: () => false, render: () => {}, announce: () => {}, iceServers: () => [] };

/** `send(message) → bool`, `render()`, `announce(text)`, `iceServers() → [...]`. */
export function init(h) {
  hooks = { ...hooks, ...h };
}

export const phone = P;

/** Asks for the microphone (once: a granted stream is kept). `null` when refused or missing. */
export async function microphone() {
  if (P.mic && P.mic.getAudioTracks().some((t) => t.readyState === 'live')) return P.mic;
  if (!navigator.mediaDevices?.getUserMedia) {
    P.micError = 'insecure';
    hooks.render();
    return null;
  }
  try {
    P.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true }, video: false });
    P.micError = null;
    startMeter();
  } catch (e) {
    P.mic = null;
    P.micError = e?.name === 'NotAllowedError' || e?.name === 'SecurityError' ? 'refused'
      : e?.name === 'NotFoundError' || e?.name === 'OverconstrainedError' ? 'missing' : 'failed';
  }
  hooks.render();
  return P.mic;
}

function startMeter() {
  if (P.levelTimer || !P.mic) return;
  try {
    const ctx = new AudioContext();
    const source = ctx.createMediaStreamSource(P.mic);
    P.analyser = ctx.createAnalyser();
    P.analyser.fftSize = 512;
    source.connect(P.analyser);
  } catch {
    P.analyser = null;
    return;
  }
  const data = new Float32Array(P.analyser.fftSize);
  P.levelTimer = setInterval(() => {
    P.analyser.getFloatTimeDomainData(data);
    let sum = 0;
    for (const v of data) sum += v * v;
    const rms = Math.sqrt(sum / data.length);
    const meter = document.getElementById('phone-level');
    if (meter) meter.value = P.muted ? 0 : Math.min(1, rms * 4);
  }, 100);
}

/** Starts the phone for a call just accepted (or restores it): offer → `phone_offer`. */
export async function start(callId) {
  if (P.pc && P.callId === callId && P.pc.connectionState !== 'closed' && P.pc.connectionState !== 'failed') {
    return restart();
  }
  stop();
  P.callId = callId;
  P.state = 'connecting';
  P.held = false;
  P.connectedAt = null;
  hooks.render();
  const mic = await microphone();
  if (!mic) {
    hooks.send({ type: 'phone_failed', call_id: callId, reason: `microphone ${P.micError ?? 'failed'}` });
    P.state = 'failed';
    hooks.render();
    return;
  }
  const pc = new RTCPeerConnection({ iceServers: hooks.iceServers(), bundlePolicy: 'max-bundle' });
  P.pc = pc;
  for (const track of mic.getAudioTracks()) {
    track.enabled = !P.muted;
    pc.addTrack(track, mic);
  }
  pc.ontrack = (e) => {
    const audio = document.getElementById('phone-audio');
    audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
    audio.play().catch(() => {});
  };
  pc.onconnectionstatechange = () => {
    if (pc !== P.pc) return;
    if (pc.connectionState === 'disconnected') setState('reconnecting');
  };
  await offer(false);
}

/** The socket came back mid-call: an ICE restart on the same connection. */
export async function restart() {
  if (!P.pc) return;
  await offer(true);
}

async function offer(restart) {
  P.lastRestart = restart;
  const pc = P.pc;
  const callId = P.callId;
  const description = await pc.createOffer(restart ? { iceRestart: true } : {});
  await pc.setLocalDescription(description);
  await gathered(pc);
  if (pc !== P.pc) return;
  hooks.send({ type: 'phone_offer', call_id: callId, sdp: pc.localDescription.sdp, restart });
}

/** Waits briefly for the host candidates (the server needs none, but they do no harm). */
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

/** `phone_answer`. */
export async function answered(m) {
  if (!P.pc || m.call_id !== P.callId) return;
  try {
    await P.pc.setRemoteDescription({ type: 'answer', sdp: m.sdp });
  } catch {
    setState('failed');
  }
}

/**
 * The server refused a phone message (`phone_unavailable`): an ICE restart of a connection the
 * server no longer has becomes a new connection (once).
 */
export function unavailable() {
  if (!P.callId || !P.lastRestart) return false;
  const callId = P.callId;
  P.lastRestart = false;
  stop(false);
  start(callId);
  return true;
}

/** `phone_state`. */
export function stateChanged(m) {
  if (m.call_id !== P.callId) return;
  setState(m.state, m.reason);
  if (['failed', 'hung_up', 'ended'].includes(m.state)) stop(false);
}

function setState(state, reason) {
  P.state = state;
  P.reason = reason ?? null;
  if (state === 'connected' && !P.connectedAt) P.connectedAt = Date.now();
  hooks.render();
  hooks.announce(state);
}

export function toggleMute() {
  if (!P.callId) return;
  P.muted = !P.muted;
  for (const track of P.mic?.getAudioTracks() ?? []) track.enabled = !P.muted;
  hooks.render();
}

export function toggleHold() {
  if (!P.callId || !P.pc) return;
  P.held = !P.held;
  hooks.send({ type: 'hold', call_id: P.callId, on: P.held });
  hooks.render();
}

/** Whether my call is on hold (the caller hears the hold audio). */
export function isHeld() {
  return Boolean(P.callId && P.held);
}

/** Hangs up the page's side (the server ends the call's media itself). */
export function stop(forget = true) {
  if (P.pc) {
    try {
      P.pc.close();
    } catch {
      // already closed
    }
  }
  P.pc = null;
  const audio = document.getElementById('phone-audio');
  if (audio) audio.srcObject = null;
  if (forget) {
    P.callId = null;
    P.state = null;
    P.connectedAt = null;
    P.held = false;
  }
  hooks.render();
}

/** Seconds since the audio first connected (the call timer), or null. */
export function elapsedSecs() {
  return P.connectedAt ? Math.floor((Date.now() - P.connectedAt) / 1000) : null;
}
