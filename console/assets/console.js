// The operator console: sign-in, the websocket `/ws` (docs/console-protocol.md),
// presence, the queue, offers with their screen-pop, the call view (search as you type, notes,
// referrals, disposition), wrap-up and callbacks. Plain JavaScript, no build step; every text
// goes through i18n.js and every value from the server reaches the page as text, never as HTML.

import * as i18n from './i18n.js';
import * as phone from './phone.js';
import * as callback from './callback.js';
import * as mediation from './mediation.js';
import * as recording from './recording.js';
import * as sms from './sms.js';

const { t, label } = i18n;

// ---- constants ----------------------------------------------------------------------------------

const SEARCH_DEBOUNCE_MS = 120;
const NOTE_DEBOUNCE_MS = 700;
const PING_EVERY_MS = 20_000;
const SILENCE_LIMIT_MS = 45_000;
const RETRY_MIN_MS = 500;
const RETRY_MAX_MS = 10_000;
const LONG_WAIT_SECS = 120;
const RADII_KM = [5, 10, 25, 50];
const DEFAULT_AREAS = ['lingua', 'lavoro', 'casa', 'salute', 'minori', 'mediazione'];
const DEFAULT_LANGUAGES = ['it', 'en', 'fr', 'es', 'ar'];
/** The Portale Integrazione Migranti's site search, with the service's name and town as query. */
const PORTAL_SEARCH = 'https://www.integrazionemigranti.gov.it/it-it/Ricerca?q=';
const TIMEZONE = 'Europe/Rome';
const PATH_HIDDEN = new Set(['prompt_finished']);
/** Where an operator with both a SIP target and the browser answers (`browser` | `phone`). */
const DEVICE_KEY = 'helpline.device';

// ---- state --------------------------------------------------------------------------------------

const S = {
  user: null,
  csrf: null,
  /** Server clock minus ours (from the HTTP `Date` header), so countdowns match the server's. */
  skewMs: 0,
  signedIn: false,
  ws: null,
  connState: 'offline',
  attempt: 0,
  retryAt: 0,
  retryTimer: null,
  lastRx: 0,
  lastPing: 0,
  lastSeq: 0,
  presence: { state: 'offline', reason: null, since: null },
  queue: [],
  offer: null,
  /** The call on screen: `{call_id, state, pop, referrals: Map(id → name), disposition, ended}`. */
  call: null,
  wrapUntil: null,
  config: { dispositions: [], areas: DEFAULT_AREAS, languages: DEFAULT_LANGUAGES, wrap_up_secs: null },
  search: { qseq: 0, newest: 0, timer: null, area: '', lang: '', near: '', radius: 0, openNow: false, counts: {} },
  /** Requests waiting for their `saved` or `error`, by `ref`. */
  refs: new Map(),
  nextRef: 1,
  noteTimer: null,
  callbacks: [],
};

const now = () => Date.now() + S.skewMs;
/** Makes this page's request refs unique across reloads and tabs. */
const PAGE_ID = Math.random().toString(36).slice(2, 8);

// ---- small DOM helpers --------------------------------------------------------------------------

const $ = (id) => document.getElementById(id);

/** An element with attributes (`class`, `text`, `data-*`, `aria-*`, properties) and children. */
function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
    else if (k.startsWith('data-') || k.startsWith('aria-') || k === 'role' || k === 'for' || k === 'datetime') {
      e.setAttribute(k, v === true ? '' : String(v));
    } else e[k] = v;
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function show(id, visible) {
  $(id).hidden = !visible;
}

function announce(text, urgent = false) {
  const region = $(urgent ? 'announcer-urgent' : 'announcer');
  region.textContent = '';
  // A fresh node, so screen readers announce the same text twice in a row too.
  requestAnimationFrame(() => { region.textContent = text; });
}

/** A message in the corner (errors by default); it goes away after a while or when clicked. */
function alertBox(text, kind = 'error', ms = 8000) {
  const box = h('div', { class: `alert ${kind}`, text, on: { click: () => box.remove() } });
  $('alerts').append(box);
  setTimeout(() => box.remove(), ms);
}

function isTyping(target) {
  if (!(target instanceof HTMLElement)) return false;
  if (target.isContentEditable) return true;
  if (target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement) return true;
  if (target instanceof HTMLInputElement) return !['radio', 'checkbox', 'button', 'submit'].includes(target.type);
  return false;
}

// ---- time ---------------------------------------------------------------------------------------

function clockTime(iso, withSeconds = false) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Intl.DateTimeFormat(i18n.locale(), {
    timeZone: TIMEZONE, hour: '2-digit', minute: '2-digit', second: withSeconds ? '2-digit' : undefined,
  }).format(d);
}

function dateTime(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  return new Intl.DateTimeFormat(i18n.locale(), {
    timeZone: TIMEZONE, day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit',
  }).format(d);
}

/** `m:ss` (or `h:mm:ss`) for a ticking wait. */
function clock(secs) {
  const s = Math.max(0, Math.floor(secs));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

function duration(secs) {
  const s = Math.max(0, Math.round(secs));
  if (s < 60) return t('time.secs', { n: s });
  if (s < 3600) return t('time.mins', { m: Math.floor(s / 60), s: s % 60 });
  return t('time.hours', { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

const secsSince = (iso) => (now() - new Date(iso).getTime()) / 1000;
const secsUntil = (iso) => Math.ceil((new Date(iso).getTime() - now()) / 1000);

// ---- HTTP ---------------------------------------------------------------------------------------

function noteSkew(response) {
  const date = Date.parse(response.headers.get('date') ?? '');
  if (Number.isNaN(date)) return;
  const diff = date - Date.now();
  // The header has whole seconds: only a real difference is worth correcting.
  S.skewMs = Math.abs(diff) > 1500 ? diff : 0;
}

/** A JSON request; state-changing ones carry the CSRF token. Resolves to `{status, ok, data, headers}`. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
  let response;
  try {
    response = await fetch(path, {
      method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    return { status: 0, ok: false, data: { error: 'network', message: String(e) }, headers: new Headers() };
  }
  noteSkew(response);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (S.signedIn && path !== '/api/session') {
    if (response.status === 401) signedOut(t('error.session_ended'));
    else if (response.status === 403 && data?.error === 'csrf') signedOut(t('error.csrf'));
  }
  return { status: response.status, ok: response.ok, data, headers: response.headers };
}

// ---- sign-in and out ----------------------------------------------------------------------------

async function boot() {
  i18n.apply();
  bindUi();
  setInterval(tick, 1000);
  const r = await api('GET', '/api/session');
  if (r.ok && r.data?.user) startSession(r.data);
  else showSignin();
}

function showSignin(message = '') {
  S.signedIn = false;
  show('password', false);
  show('signin', true);
  show('workspace', false);
  show('presence', false);
  show('conn', false);
  show('signout', false);
  show('signout-everywhere', false);
  $('me').textContent = '';
  $('signin-error').textContent = message;
  $('signin-name').focus();
}

async function submitSignin(event) {
  event.preventDefault();
  const name = $('signin-name').value.trim();
  const password = $('signin-password').value;
  const button = event.submitter ?? $('signin-form').querySelector('button');
  button.disabled = true;
  const r = await api('POST', '/api/session', { name, password });
  button.disabled = false;
  if (r.ok && r.data?.user) {
    $('signin-password').value = '';
    startSession(r.data);
    return;
  }
  let message;
  if (r.status === 401) message = t('signin.bad_credentials');
  else if (r.status === 429) message = t('signin.rate_limited', { secs: r.headers.get('retry-after') ?? '60' });
  else message = t('signin.failed', { status: r.status || r.data?.message });
  $('signin-error').textContent = message;
  $('signin-password').select();
}

/** A password someone else chose (the first admin's, an admin's reset): the user chooses their own
 * before anything else; the server refuses everything else until then. */
function showPasswordForm(data) {
  S.pendingSession = data;
  show('signin', false);
  show('password', true);
  $('me').textContent = data.user.name;
  $('password-error').textContent = '';
  $('password-current').focus();
}

async function submitPassword(event) {
  event.preventDefault();
  const current = $('password-current').value;
  const fresh = $('password-new').value;
  const error = (key) => { $('password-error').textContent = t(key); };
  if ([...fresh].length < 12) return error('password.too_short');
  if (fresh !== $('password-repeat').value) return error('password.mismatch');
  const data = S.pendingSession;
  const response = await fetch('/api/session/password', {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': data.csrf_token },
    body: JSON.stringify({ current_password: current, new_password: fresh }),
  });
  if (response.status === 204) {
    for (const id of ['password-current', 'password-new', 'password-repeat']) $(id).value = '';
    show('password', false);
    S.pendingSession = null;
    announce(t('password.saved'));
    startSession({ ...data, user: { ...data.user, must_change_password: false } });
    return;
  }
  const body = await response.json().catch(() => null);
  if (response.status === 401) error('password.wrong_current');
  else if (response.status === 429) $('password-error').textContent = t('signin.rate_limited', { secs: response.headers.get('retry-after') ?? '60' });
  else $('password-error').textContent = body?.message ?? t('signin.failed', { status: response.status });
}

function startSession(data) {
  if (data.user.must_change_password) {
    showPasswordForm(data);
    return;
  }
  S.user = data.user;
  S.csrf = data.csrf_token;
  S.signedIn = true;
  S.lastSeq = Number(sessionStorage.getItem(seqKey()) ?? 0) || 0;
  $('me').textContent = S.user.name;
  show('signin', false);
  show('workspace', true);
  show('presence', true);
  show('conn', true);
  show('signout', true);
  show('signout-everywhere', true);
  renderAll();
  connect();
  loadCallbacks();
}

/** The session is over (signed out here or elsewhere, or expired): back to the form. */
function signedOut(message = '') {
  if (!S.signedIn) return;
  S.signedIn = false;
  S.user = null;
  S.csrf = null;
  S.offer = null;
  S.call = null;
  S.queue = [];
  clearTimeout(S.retryTimer);
  const ws = S.ws;
  S.ws = null;
  if (ws) ws.close(1000, 'signed out');
  setConn('offline');
  showSignin(message);
}

async function signOut() {
  await api('DELETE', '/api/session');
  sessionStorage.removeItem(seqKey());
  signedOut();
}

async function signOutEverywhere() {
  if (!window.confirm(t('signout.everywhere.confirm'))) return;
  const r = await api('POST', '/api/session/everywhere');
  if (!r.ok && r.status !== 401) {
    alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    return;
  }
  sessionStorage.removeItem(seqKey());
  signedOut();
}

// ---- the websocket ------------------------------------------------------------------------------

function seqKey() {
  return `helpline.last_seq.${S.user?.id ?? 'anon'}`;
}

function rememberSeq(seq) {
  S.lastSeq = seq;
  try {
    sessionStorage.setItem(seqKey(), String(seq));
  } catch {
    // Storage full or disabled: the replay starts from what this page saw in memory.
  }
}

function connect() {
  clearTimeout(S.retryTimer);
  if (!S.signedIn) return;
  if (!navigator.onLine) {
    setConn('browser_offline');
    return;
  }
  setConn('connecting');
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  S.ws = ws;
  ws.addEventListener('open', () => {
    if (S.ws !== ws) return;
    S.lastRx = Date.now();
    send({ type: 'hello', last_seq: S.lastSeq });
  });
  ws.addEventListener('message', (e) => {
    if (S.ws === ws) onMessage(e.data);
  });
  ws.addEventListener('close', () => {
    if (S.ws !== ws) return;
    S.ws = null;
    onClosed();
  });
}

async function onClosed() {
  if (!S.signedIn) return;
  setConn('offline');
  // A closed socket may mean a closed session (signed out everywhere, expired): ask.
  const r = await api('GET', '/api/session');
  if (r.status === 401) {
    signedOut(t('error.session_ended'));
    return;
  }
  if (r.ok && r.data?.csrf_token) S.csrf = r.data.csrf_token;
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!S.signedIn || S.ws) return;
  clearTimeout(S.retryTimer);
  const base = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** S.attempt);
  const delay = Math.round(base * (0.8 + Math.random() * 0.4));
  S.attempt += 1;
  S.retryAt = Date.now() + delay;
  setConn(navigator.onLine ? 'offline' : 'browser_offline');
  S.retryTimer = setTimeout(connect, delay);
}

function send(message) {
  if (!S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  S.ws.send(JSON.stringify(message));
  return true;
}

/** Sends a request that the server answers with `saved` or `error` carrying its `ref`. */
function sendWithRef(message, pending) {
  const ref = `${PAGE_ID}-${S.nextRef++}`;
  if (!send({ ...message, ref })) return null;
  S.refs.set(ref, pending);
  return ref;
}

function setConn(state) {
  S.connState = state;
  const box = $('conn');
  box.dataset.state = state === 'browser_offline' ? 'offline' : state;
  renderConn();
}

function renderConn() {
  const text = {
    connecting: () => t('conn.connecting'),
    online: () => t('conn.online'),
    browser_offline: () => t('conn.browser_offline'),
    offline: () => t('conn.offline', { secs: Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000)) }),
  }[S.connState];
  const next = text ? text() : '';
  if ($('conn-text').textContent !== next) $('conn-text').textContent = next;
}

function onMessage(raw) {
  let msg;
  try {
    msg = JSON.parse(raw);
  } catch {
    return;
  }
  if (!msg || typeof msg.type !== 'string') return;
  S.lastRx = Date.now();
  if (typeof msg.seq === 'number') {
    if (msg.seq <= S.lastSeq) return; // already seen (a replay overlapping what we had)
    rememberSeq(msg.seq);
  }
  const handler = HANDLERS[msg.type];
  if (handler) handler(msg);
}

const HANDLERS = {
  welcome(m) {
    S.attempt = 0;
    setConn('online');
    const newest = Number(m.last_seq) || 0;
    // First connection of this tab (nothing to replay), or a server whose history restarted.
    if (S.lastSeq === 0 || S.lastSeq > newest) rememberSeq(newest);
    if (m.user) S.user = { ...S.user, ...m.user };
    if (m.config) applyConfig(m.config);
    if (m.presence) S.presence = m.presence;
    if (Array.isArray(m.queue)) S.queue = m.queue;
    S.offer = m.offer && secsUntil(m.offer.expires_at) > 0 ? m.offer : null;
    const shown = S.call?.call_id;
    if (m.call) openCall(m.call, false);
    // A browser call in progress: the phone comes back (an ICE restart when this page still has
    // its connection, a new one after a reload).
    if (m.call && m.call.state === 'connected' && m.call.device === 'browser') phone.start(m.call.call_id);
    else if (S.call && !S.call.ended && !['on_call', 'wrap_up'].includes(S.presence.state)) S.call = null;
    if (S.presence.state === 'wrap_up') S.wrapUntil = S.presence.wrap_up_until ?? S.presence.until ?? S.wrapUntil;
    renderAll();
    // What was typed while the socket was down goes out now.
    if (S.call) {
      flushNote();
      // A call opened just now has searched already; one kept across a reconnect searches again.
      if (shown === S.call.call_id && S.search.qseq > 0) sendSearch();
    }
  },
  presence(m) {
    const op = m.operator;
    if (!op || !S.user || op.id !== S.user.id) return;
    const before = S.presence.state;
    S.presence = op;
    if (op.state === 'wrap_up') {
      S.wrapUntil = op.wrap_up_until ?? op.until ?? S.wrapUntil;
      if (S.call) S.call.ended = true;
    }
    if (['available', 'paused', 'offline'].includes(op.state) && S.call && (S.call.ended || before === 'wrap_up')) {
      closeCall();
    }
    if (op.state === 'paused' && op.reason === 'missed offer') alertBox(t('offer.withdrawn.expired'), 'info');
    renderAll();
  },
  queue(m) {
    S.queue = Array.isArray(m.calls) ? m.calls : [];
    renderQueue();
  },
  offer(m) {
    if (secsUntil(m.expires_at) <= 0) return;
    S.offer = { offer_id: m.offer_id, expires_at: m.expires_at, pop: m.pop ?? {} };
    renderStage();
    const pop = S.offer.pop;
    announce(`${t('offer.title')}: ${label('language', pop.language)}, ${label('area', pop.area)}, ${pop.town ?? ''}`, true);
    if (!isTyping(document.activeElement)) $('offer-accept').focus();
  },
  offer_withdrawn(m) {
    if (!S.offer || S.offer.offer_id !== m.offer_id) return;
    S.offer = null;
    const key = `offer.withdrawn.${m.reason}`;
    if (i18n.has(key) && m.reason !== 'expired') alertBox(t(key), 'info', 5000);
    renderStage();
  },
  call(m) {
    if (m.state === 'connected') {
      openCall(m, true);
      if (m.device === 'browser') phone.start(m.call_id);
    } else if (S.call && S.call.call_id === m.call_id) {
      S.call.state = m.state;
      if (m.pop) S.call.pop = m.pop;
      if (m.state === 'ended') {
        S.call.ended = true;
        announce(t('call.ended_by_caller'), true);
      } else if (m.state === 'transfer_failed') {
        alertBox(t('call.transfer_failed'));
        phone.stop();
      }
    }
    renderAll();
  },
  wrap_up(m) {
    phone.stop();
    S.wrapUntil = m.until;
    if (S.call && S.call.call_id === m.call_id) S.call.ended = true;
    renderAll();
    announce(t('wrapup.title'));
  },
  search_results(m) {
    if (m.qseq < S.search.newest) return; // an answer to an older keystroke
    renderResults(m);
  },
  saved(m) {
    const pending = S.refs.get(m.ref);
    if (!pending) return;
    S.refs.delete(m.ref);
    if (pending.what === 'note') noteSaved(pending, m.at);
    else if (S.call && S.call.call_id === pending.call_id) {
      keepCallWork();
      if (pending.what === 'disposition') $('disposition-status').textContent = t('disposition.saved');
    }
  },
  error(m) {
    // A restart of a phone connection the server no longer has: the page connects anew.
    if (m.code === 'phone_unavailable' && phone.unavailable()) return;
    if (m.qseq !== undefined && m.qseq !== null) {
      // A search the server could not run (a place it does not know…): said where the results go.
      if (m.qseq >= S.search.newest) {
        $('results-summary').textContent = t('error.generic', { message: m.message ?? m.code });
        $('results').replaceChildren();
      }
      return;
    }
    const pending = m.ref ? S.refs.get(m.ref) : null;
    if (pending) {
      S.refs.delete(m.ref);
      if (pending.what === 'referral' && S.call && S.call.call_id === pending.call_id) {
        // Undo what the page showed at once.
        if (pending.add) S.call.referrals.delete(pending.service_id);
        else S.call.referrals.set(pending.service_id, pending.name);
        renderReferrals();
      }
      if (pending.what === 'note') $('notes-status').textContent = t('notes.unsaved');
    }
    alertBox(t('error.generic', { message: m.message ?? m.code }));
  },
  pong() {},
  phone_answer(m) {
    phone.answered(m);
  },
  mediation_offer(m) {
    mediation.offered(m);
  },
  mediation(m) {
    mediation.news(m);
  },
  interpreter(m) {
    mediation.interpreterNews(m);
  },
  phone_state(m) {
    phone.stateChanged(m);
    if (m.state === 'failed') alertBox(t('phone.state.failed') + (m.reason ? ` (${m.reason})` : ''));
    if (m.state === 'hung_up') announce(t('phone.state.hung_up'), true);
  },
};

function applyConfig(config) {
  S.config = {
    ...S.config,
    ...config,
    areas: Array.isArray(config.areas) && config.areas.length ? config.areas.map(codeOf) : S.config.areas,
    languages: Array.isArray(config.languages) && config.languages.length ? config.languages.map(codeOf) : S.config.languages,
    dispositions: Array.isArray(config.dispositions) ? config.dispositions : [],
  };
}

/** `"casa"` or `{code: "casa", …}` → `"casa"`. */
function codeOf(item) {
  return typeof item === 'string' ? item : String(item?.code ?? item?.id ?? '');
}

/** A disposition's label in the page's language: `{code, it, en}` (config/console.toml). */
function dispositionLabel(item) {
  if (typeof item === 'string') return item;
  const lang = i18n.lang();
  if (typeof item[lang] === 'string') return item[lang];
  if (item.label && typeof item.label === 'object') return item.label[lang] ?? item.label.it ?? item.code;
  return item[`label_${lang}`] ?? item.label ?? item.code;
}

// ---- actions ------------------------------------------------------------------------------------

function setPresence(state) {
  if (!S.signedIn) return;
  const message = { type: 'presence', state };
  if (state === 'paused') message.reason = $('presence-reason').value;
  if (!send(message)) alertBox(t('conn.offline', { secs: Math.max(0, Math.ceil((S.retryAt - Date.now()) / 1000)) }));
  renderPresence(state);
}

/** Where this operator answers: the browser unless they have a SIP phone and chose it. */
function device() {
  if (!S.user?.sip_phone) return 'browser';
  return localStorage.getItem(DEVICE_KEY) === 'browser' ? 'browser' : 'phone';
}

function acceptOffer() {
  if (!S.offer) return;
  const where = device();
  send({ type: 'accept', offer_id: S.offer.offer_id, device: where });
  // Within the click: the browser may ask for the microphone now, so the audio connects as soon
  // as the call does, with no second click.
  if (where === 'browser') phone.microphone();
}

function declineOffer() {
  if (!S.offer) return;
  send({ type: 'decline', offer_id: S.offer.offer_id });
}

function endCall() {
  if (S.call && !S.call.ended) {
    flushNote();
    send({ type: 'end_call', call_id: S.call.call_id });
  }
}

function ready() {
  if (S.presence.state === 'wrap_up' || S.call?.ended) {
    flushNote();
    send({ type: 'ready' });
  }
}

function openCall(m, fresh) {
  const same = S.call && S.call.call_id === m.call_id;
  const kept = same ? null : readCallWork(m.call_id);
  const referrals = same ? S.call.referrals : new Map(kept?.referrals ?? []);
  for (const r of m.referrals ?? []) referrals.set(r.service_id, r.service_name ?? r.name ?? r.service_id);
  S.call = {
    call_id: m.call_id,
    state: m.state ?? 'connected',
    pop: m.pop ?? (same ? S.call.pop : {}),
    referrals,
    disposition: m.disposition ?? (same ? S.call.disposition : kept?.disposition ?? null),
    ended: m.state === 'ended' || S.presence.state === 'wrap_up',
  };
  S.offer = null;
  if (!same) {
    presetSearch(S.call.pop);
    restoreNote(m.note);
  }
  renderAll();
  if (!same) sendSearch();
  if (fresh) {
    announce(t('call.title'));
    $('search-q').focus();
  }
}

function closeCall() {
  phone.stop();
  if (S.call) {
    const stored = readNote(S.call.call_id);
    if (!stored || stored.saved) localStorage.removeItem(noteKey(S.call.call_id));
    localStorage.removeItem(callWorkKey(S.call.call_id));
  }
  S.call = null;
  S.wrapUntil = null;
  S.refs.clear();
  $('results').replaceChildren();
  $('results-summary').textContent = '';
}

// ---- notes: autosave, and kept in localStorage until the server has them ----------------------------

const noteKey = (callId) => `helpline.note.${callId}`;

function readNote(callId) {
  try {
    return JSON.parse(localStorage.getItem(noteKey(callId)) ?? 'null');
  } catch {
    return null;
  }
}

function writeNote(callId, text, saved) {
  try {
    localStorage.setItem(noteKey(callId), JSON.stringify({ text, saved, at: new Date().toISOString() }));
  } catch {
    // Storage full: the text still goes to the server.
  }
}

function restoreNote(serverText) {
  const stored = readNote(S.call.call_id);
  const area = $('notes');
  if (stored && !stored.saved) {
    area.value = stored.text;
    $('notes-status').textContent = t('notes.restored');
  } else {
    area.value = serverText ?? stored?.text ?? '';
    $('notes-status').textContent = '';
  }
}

function onNoteInput() {
  if (!S.call) return;
  writeNote(S.call.call_id, $('notes').value, false);
  $('notes-status').textContent = t('notes.unsaved');
  clearTimeout(S.noteTimer);
  S.noteTimer = setTimeout(flushNote, NOTE_DEBOUNCE_MS);
}

/** Sends the note if it has unsaved changes. */
function flushNote() {
  clearTimeout(S.noteTimer);
  if (!S.call) return;
  const stored = readNote(S.call.call_id);
  if (!stored || stored.saved) return;
  const pending = { what: 'note', call_id: S.call.call_id, text: stored.text };
  if (sendWithRef({ type: 'note', call_id: S.call.call_id, text: stored.text }, pending)) {
    $('notes-status').textContent = t('notes.saving');
  }
}

function noteSaved(pending, at) {
  const stored = readNote(pending.call_id);
  if (stored && stored.text === pending.text) writeNote(pending.call_id, pending.text, true);
  if (S.call && S.call.call_id === pending.call_id && $('notes').value === pending.text) {
    $('notes-status').textContent = t('notes.saved', { time: clockTime(at ?? new Date(now()).toISOString(), true) });
  }
}

// ---- referrals and disposition ------------------------------------------------------------------

// What the server confirmed for the call on screen, kept so a reload shows it again (the
// `welcome` snapshot carries the call's pop, not its referrals or disposition).
const callWorkKey = (callId) => `helpline.call.${callId}`;

function readCallWork(callId) {
  try {
    return JSON.parse(localStorage.getItem(callWorkKey(callId)) ?? 'null');
  } catch {
    return null;
  }
}

function keepCallWork() {
  if (!S.call) return;
  try {
    localStorage.setItem(callWorkKey(S.call.call_id), JSON.stringify({
      referrals: [...S.call.referrals.entries()], disposition: S.call.disposition,
    }));
  } catch {
    // Storage full: the server has them anyway.
  }
}

function toggleReferral(serviceId, name) {
  if (!S.call) return;
  const add = !S.call.referrals.has(serviceId);
  const pending = { what: 'referral', call_id: S.call.call_id, service_id: serviceId, name, add };
  if (!sendWithRef({ type: 'referral', call_id: S.call.call_id, service_id: serviceId, add }, pending)) {
    alertBox(t('conn.connecting'));
    return;
  }
  if (add) S.call.referrals.set(serviceId, name);
  else S.call.referrals.delete(serviceId);
  renderReferrals();
  for (const li of $('results').querySelectorAll('li.result')) {
    if (li.dataset.id === serviceId) renderResultReferral(li, serviceId, name);
  }
}

function setDisposition(code) {
  if (!S.call || !code) return;
  S.call.disposition = code;
  $('disposition-status').textContent = t('notes.saving');
  sendWithRef({ type: 'disposition', call_id: S.call.call_id, code }, { what: 'disposition', call_id: S.call.call_id, code });
}

// ---- search as you type -------------------------------------------------------------------------

function presetSearch(pop) {
  S.search.area = pop.area ?? '';
  S.search.lang = pop.language && S.config.languages.includes(pop.language) ? pop.language : '';
  S.search.near = pop.cap ?? (pop.lat != null && pop.lon != null ? `${pop.lat},${pop.lon}` : pop.town ?? '');
  S.search.radius = 0;
  S.search.openNow = false;
  S.search.counts = {};
  $('search-q').value = '';
  $('search-near').value = S.search.near;
  renderFilters();
}

function scheduleSearch() {
  clearTimeout(S.search.timer);
  S.search.timer = setTimeout(sendSearch, SEARCH_DEBOUNCE_MS);
}

function sendSearch() {
  clearTimeout(S.search.timer);
  if (!S.call) return;
  const qseq = ++S.search.qseq;
  S.search.newest = qseq;
  const message = { type: 'search', qseq, q: $('search-q').value };
  if (S.search.area) message.area = S.search.area;
  if (S.search.lang) message.lang = S.search.lang;
  const near = $('search-near').value.trim();
  if (near) message.near = near;
  if (near && S.search.radius > 0) message.radius_km = S.search.radius;
  if (S.search.openNow) message.open_now = true;
  if (send(message)) $('results-summary').textContent = t('search.searching');
}

function renderFilters() {
  const areas = $('area-chips');
  const counts = S.search.counts ?? {};
  const chip = (code, text, n) => {
    const pressed = S.search.area === code;
    return h('button', {
      type: 'button', class: 'chip', 'aria-pressed': String(pressed), 'data-area': code,
      on: { click: () => { S.search.area = code; renderFilters(); sendSearch(); } },
    }, text, n === undefined ? null : h('span', { class: 'n', text: String(n) }));
  };
  areas.replaceChildren(
    chip('', t('search.area.any')),
    ...S.config.areas.map((a) => chip(a, label('area', a), counts[a])),
  );

  const select = $('search-lang');
  select.replaceChildren(
    h('option', { value: '', text: t('search.lang.any') }),
    ...S.config.languages.map((l) => h('option', { value: l, text: label('language', l) })),
  );
  select.value = S.search.lang;

  $('chip-open-now').setAttribute('aria-pressed', String(S.search.openNow));

  const radius = (km) => h('button', {
    type: 'button', class: 'chip', 'aria-pressed': String(S.search.radius === km), 'data-radius': String(km),
    on: { click: () => { S.search.radius = km; renderFilters(); sendSearch(); } },
  }, km === 0 ? t('search.radius.any') : `${km} km`);
  $('radius-chips').replaceChildren(...RADII_KM.map(radius), radius(0));
}

function renderResults(m) {
  S.search.counts = m.counts ?? {};
  renderFilters();
  const results = Array.isArray(m.results) ? m.results : [];
  const total = Number(m.total ?? results.length);
  $('results-summary').textContent = total === 0 ? t('search.results.none') : t('search.results', { n: total });
  // A "Report a problem" form being filled in survives new results of the same service.
  const openForms = new Map([...$('results').querySelectorAll('li.result')]
    .filter((li) => li.querySelector('form.flag-form'))
    .map((li) => [li.dataset.id, li.querySelector('form.flag-form')]));
  const items = results.map(resultItem);
  for (const li of items) if (openForms.has(li.dataset.id)) li.append(openForms.get(li.dataset.id));
  $('results').replaceChildren(...items);
}

function serviceAddress(service) {
  const location = service.service_at_locations?.[0]?.location;
  const address = location?.addresses?.[0];
  if (!address) return service.town ?? '';
  return [address.address_1, [address.postal_code, address.city].filter(Boolean).join(' ')].filter(Boolean).join(', ');
}

function portalUrl(service) {
  return PORTAL_SEARCH + encodeURIComponent([service.name, service.town].filter(Boolean).join(' '));
}

function resultItem(service) {
  const id = String(service.id);
  const name = service.name ?? id;
  const phone = service.phones?.[0]?.number;
  const meta = h('div', { class: 'meta' },
    typeof service.distance_km === 'number'
      ? h('span', { class: 'distance', text: t('result.distance', { km: service.distance_km.toLocaleString(i18n.locale(), { maximumFractionDigits: 1 }) }) })
      : null,
    service.open_now ? h('span', { class: 'open', text: t('result.open_now') }) : null,
    h('span', { class: service.hours_today ? 'hours' : 'closed', text: service.hours_today ? t('result.today', { hours: service.hours_today }) : t('result.closed_today') }),
    phone ? h('a', { href: `tel:${phone.replace(/[^+\d]/g, '')}`, class: 'phone', text: phone }) : null,
  );
  const li = h('li', { class: 'result', 'data-id': id },
    h('h4', { text: name }),
    service.organization?.name && service.organization.name !== name ? h('div', { class: 'org', text: service.organization.name }) : null,
    meta,
    h('div', { class: 'address', text: serviceAddress(service) }),
    h('div', { class: 'side-actions' },
      h('button', { type: 'button', class: 'referral-toggle' }),
      h('a', { href: portalUrl(service), target: '_blank', rel: 'noopener noreferrer', title: t('result.portal.title'), text: t('result.portal') }),
      h('button', { type: 'button', class: 'flag-open btn-secondary btn-small', text: t('flag.open'), 'aria-label': `${t('flag.open')}: ${name}`,
        on: { click: () => openFlagForm(li, id) } }),
    ),
  );
  if (service.reported) markReported(li);
  li.querySelector('.referral-toggle').addEventListener('click', () => toggleReferral(id, name));
  renderResultReferral(li, id, name);
  return li;
}

const FLAG_REASONS = ['phone_wrong', 'closed', 'moved', 'hours_wrong', 'other'];

// "Report a problem": a reason and a note, tied to the service and the call in progress
// (`POST /api/services/{id}/flags`); the result then shows "Reported", as it does for every
// operator until an editor resolves the flag.
function openFlagForm(li, id) {
  if (li.querySelector('form.flag-form')) return;
  const select = h('select', { name: 'reason', class: 'flag-reason' },
    ...FLAG_REASONS.map((r) => h('option', { value: r, text: t(`flag.reason.${r}`) })));
  const note = h('textarea', { name: 'note', class: 'flag-note', rows: 2, maxLength: 2000 });
  const error = h('p', { class: 'flag-error', role: 'alert' });
  const form = h('form', { class: 'flag-form' },
    h('label', {}, t('flag.reason'), select),
    h('label', {}, t('flag.note'), note),
    error,
    h('div', { class: 'flag-buttons' },
      h('button', { type: 'submit', class: 'flag-send', text: t('flag.send') }),
      h('button', { type: 'button', class: 'btn-secondary flag-cancel', text: t('flag.cancel'), on: { click: () => form.remove() } }),
    ),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const body = { reason: select.value, note: note.value };
    if (S.call?.call_id && !S.call.ended) body.call_id = S.call.call_id;
    const r = await api('POST', `/api/services/${encodeURIComponent(id)}/flags`, body);
    if (!r.ok) {
      error.textContent = t('error.generic', { message: r.data?.message ?? r.status });
      return;
    }
    const card = form.closest('li.result') ?? li;
    form.remove();
    markReported(card);
    announce(t('flag.sent'));
  });
  li.append(form);
  select.focus();
}

function markReported(li) {
  if (li.querySelector('.reported')) return;
  li.classList.add('is-reported');
  li.querySelector('h4').after(h('span', { class: 'reported', title: t('result.reported.title'), text: t('result.reported') }));
}

function renderResultReferral(li, id, name) {
  const given = S.call?.referrals.has(id) ?? false;
  li.classList.toggle('given', given);
  const button = li.querySelector('.referral-toggle');
  button.className = `referral-toggle ${given ? 'remove' : 'add'}`;
  button.textContent = given ? t('result.remove') : t('result.add');
  button.setAttribute('aria-pressed', String(given));
  button.setAttribute('aria-label', `${given ? t('result.remove') : t('result.add')}: ${name}`);
}

function renderReferrals() {
  const list = $('referrals');
  const entries = S.call ? [...S.call.referrals.entries()] : [];
  show('referrals-empty', entries.length === 0);
  list.replaceChildren(...entries.map(([id, name]) => h('li', { 'data-id': id },
    name,
    h('button', {
      type: 'button', class: 'btn-secondary btn-small', text: t('result.remove'), 'aria-label': `${t('result.remove')}: ${name}`,
      on: { click: () => toggleReferral(id, name) },
    }),
  )));
  for (const li of $('results').querySelectorAll('li.result')) {
    renderResultReferral(li, li.dataset.id, li.querySelector('h4').textContent);
  }
  sms.render();
}

// ---- callbacks ----------------------------------------------------------------------------------

async function loadCallbacks() {
  const r = await api('GET', '/api/callbacks');
  if (!r.ok) {
    S.callbacks = [];
  } else {
    const d = r.data;
    S.callbacks = Array.isArray(d) ? d : Array.isArray(d?.callbacks) ? d.callbacks : Array.isArray(d?.items) ? d.items : [];
  }
  renderCallbacks();
}

async function callbackAction(id, action) {
  const r = await api('POST', `/api/callbacks/${encodeURIComponent(id)}/${action}`);
  if (!r.ok) alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
  await loadCallbacks();
}

function renderCallbacks() {
  const list = $('callbacks');
  show('callbacks-empty', S.callbacks.length === 0);
  list.replaceChildren(...S.callbacks.map((cb) => {
    const claimer = cb.claimed_by_name ?? cb.claimed_by ?? cb.operator ?? null;
    const mine = claimer !== null && (claimer === S.user?.name || claimer === S.user?.id);
    const requested = cb.requested_at ?? cb.created_at ?? cb.at;
    const done = cb.status === 'done';
    return h('li', { 'data-id': String(cb.id) },
      h('span', { class: 'cb-main' },
        [cb.masked_number, label('language', cb.language), label('area', cb.area), cb.town].filter(Boolean).join(' · '),
        h('span', { class: 'cb-meta' },
          [requested ? t('callbacks.requested', { time: dateTime(requested) }) : '', claimer ? t('callbacks.claimed_by', { name: claimer }) : '',
           cb.attempts ? t('callbacks.attempts', { n: cb.attempts }) : '']
            .filter(Boolean).join(' · ')),
        // The voice message: fetched only when played (each opening is audited by the server).
        cb.voicemail_ms ? h('span', { class: 'cb-voicemail' },
          h('span', { class: 'cb-meta', text: t('callbacks.voicemail', { secs: Math.max(1, Math.round(cb.voicemail_ms / 1000)) }) }),
          h('audio', { controls: true, preload: 'none', src: `/api/callbacks/${encodeURIComponent(cb.id)}/voicemail`, 'aria-label': t('callbacks.voicemail', { secs: Math.max(1, Math.round(cb.voicemail_ms / 1000)) }) }),
        ) : null,
      ),
      !claimer && !done ? h('button', { type: 'button', class: 'btn-secondary btn-small', text: t('callbacks.claim'), on: { click: () => callbackAction(cb.id, 'claim') } }) : null,
      mine && !done && callback.callback.id !== cb.id ? h('button', { type: 'button', class: 'btn-primary btn-small', text: t('callbacks.done'), on: { click: () => callbackAction(cb.id, 'done') } }) : null,
      ...callbackCall(cb, done || (claimer !== null && !mine)),
    );
  }));
}

/** "Call back" (or, while calling it, its state and "Hang up"). */
function callbackCall(cb, unavailable) {
  if (callback.active()) {
    if (callback.callback.id !== cb.id) return [];
    return [
      h('span', { class: 'cb-meta', role: 'status', text: t(`callbacks.state.${callback.callback.state}`) }),
      h('button', { type: 'button', class: 'btn-danger btn-small', text: t('callbacks.hang_up'), on: { click: () => callback.hangUp() } }),
    ];
  }
  if (unavailable || cb.calling_since) return [];
  return [h('button', { type: 'button', class: 'btn-primary btn-small', text: t('callbacks.call'), on: { click: async () => {
    const problem = await callback.call(cb.id);
    if (problem) alertBox(problem);
    await loadCallbacks();
  } } })];
}

// ---- rendering ----------------------------------------------------------------------------------

function renderAll() {
  renderPhone();
  renderPresence();
  renderQueue();
  renderStage();
  renderCallbacks();
  renderConn();
}

function renderPresence(optimistic) {
  const state = optimistic ?? S.presence.state;
  for (const radio of document.querySelectorAll('input[name="presence"]')) radio.checked = radio.value === state;
  if (state === 'paused' && S.presence.reason && !optimistic) {
    const option = [...$('presence-reason').options].find((o) => o.value === S.presence.reason);
    if (option) $('presence-reason').value = S.presence.reason;
  }
  $('presence-reason').parentElement.hidden = state !== 'paused';
  const badge = ['offered', 'on_call', 'wrap_up'].includes(state)
    ? t(`presence.${state}`)
    : state === 'paused' && S.presence.reason && !$('presence-reason').querySelector(`option[value="${CSS.escape(S.presence.reason)}"]`)
      ? label('presence.reason', S.presence.reason)
      : '';
  $('presence-state').textContent = badge;
  $('idle-text').textContent = t(`idle.${['available', 'paused'].includes(state) ? state : 'offline'}`);
}

function renderQueue() {
  const calls = S.queue;
  $('queue-count').textContent = calls.length ? t('queue.count', { n: calls.length }) : '';
  show('queue-empty', calls.length === 0);
  show('queue', calls.length > 0);
  $('queue-rows').replaceChildren(...calls.map((c) => h('tr', { 'data-call': c.call_id },
    h('td', { text: label('language', c.language) }),
    h('td', { text: label('area', c.area) }),
    h('td', { text: c.town ?? '' }),
    h('td', { class: 'num wait', 'data-entered': c.entered_at, text: clock(secsSince(c.entered_at)) }),
  )));
  tickQueue();
}

function renderStage() {
  const offer = S.offer;
  const call = S.call;
  const wrapping = Boolean(call && call.ended) || S.presence.state === 'wrap_up';
  show('offer', Boolean(offer));
  show('call', Boolean(call) && !offer);
  show('wrapup', wrapping && !offer);
  show('idle', !offer && !call && !wrapping);
  if (offer) {
    $('offer-pop').replaceChildren(...popNodes(offer.pop, true));
    tickOffer();
  }
  if (call) {
    $('call-pop').replaceChildren(...popNodes(call.pop, false));
    $('call-end').hidden = call.ended;
    $('call-status').textContent = call.state === 'transfer_failed'
      ? t('call.transfer_failed')
      : call.ended ? t('call.ended_by_caller') : '';
    renderFilters();
    renderReferrals();
    renderDispositions();
  }
  mediation.render();
  recording.render();
  sms.render();
  tickWrapUp();
}

/** The microphone notice (browser operators) and the call's phone bar. */
function renderPhone() {
  const browser = S.signedIn && device() === 'browser';
  const P = phone.phone;
  show('mic', browser && (!P.mic || P.micError !== null));
  if (P.micError) $('mic-error').textContent = t(`mic.${P.micError}`);
  else $('mic-error').textContent = '';
  const choice = $('device-choice');
  choice.hidden = !S.user?.sip_phone;
  for (const radio of choice.querySelectorAll('input')) radio.checked = radio.value === device();
  const on = Boolean(P.callId) && Boolean(S.call) && S.call.call_id === P.callId;
  show('phone', on);
  if (!on) return;
  const state = P.state ? t(`phone.state.${P.state}`) : '';
  const extra = [P.muted ? t('phone.muted') : '', P.held ? t('phone.held') : ''].filter(Boolean).join(' · ');
  $('phone-state').textContent = extra ? `${state} — ${extra}` : state;
  $('phone-state').dataset.state = P.state ?? '';
  $('phone-mute').setAttribute('aria-pressed', String(P.muted));
  $('phone-hold').setAttribute('aria-pressed', String(P.held));
  tickPhone();
}

function tickPhone() {
  const secs = phone.elapsedSecs();
  $('phone-timer').textContent = secs === null ? '' : clock(secs);
}

function renderDispositions() {
  const select = $('disposition');
  const current = S.call?.disposition ?? '';
  select.replaceChildren(
    h('option', { value: '', text: t('disposition.choose'), disabled: true }),
    ...S.config.dispositions.map((d) => h('option', { value: codeOf(d), text: dispositionLabel(d) })),
  );
  select.value = current;
  if (!current) select.selectedIndex = 0;
}

/** The screen-pop: facts, the path through the menu with timings, earlier calls and their notes. */
function popNodes(pop, full) {
  const fact = (key, value, extra) => h('div', {},
    h('dt', { text: t(key) }),
    h('dd', {}, value === null || value === undefined || value === '' ? t('pop.unknown') : String(value), extra ?? null));
  const facts = h('dl', { class: 'pop-facts' },
    fact('pop.language', label('language', pop.language), pop.language_guessed ? h('small', { text: ` ${t('pop.language_guessed')}` }) : null),
    fact('pop.area', pop.area ? label('area', pop.area) : null),
    fact('pop.town', pop.town),
    fact('pop.cap', pop.cap),
    fact('pop.number', pop.masked_number),
    fact('pop.waited', null),
  );
  // The wait ticks: kept as a data attribute the ticker reads.
  const waited = facts.lastElementChild.querySelector('dd');
  waited.classList.add('pop-waited');
  if (pop.entered_queue_at) waited.dataset.since = pop.entered_queue_at;
  if (!full && pop.waited_secs != null) {
    // In the call view the wait is over: what the caller waited, not a ticking clock.
    waited.dataset.frozen = 'true';
    waited.textContent = duration(pop.waited_secs);
  } else if (pop.entered_queue_at) {
    waited.textContent = duration(secsSince(pop.entered_queue_at));
    if (!full) waited.dataset.frozen = 'true';
  } else {
    waited.textContent = pop.waited_secs != null ? duration(pop.waited_secs) : t('pop.unknown');
  }

  const nodes = [facts];
  const all = Array.isArray(pop.path) ? pop.path : [];
  // The prompts' ends and the queue's repeated announcements say nothing the operator needs.
  let queued = false;
  const path = all.filter((step) => {
    if (step.kind === 'queue_update') {
      if (queued) return false;
      queued = true;
      return true;
    }
    return !PATH_HIDDEN.has(step.kind);
  });
  if (path.length) {
    const start = new Date(all[0].at).getTime();
    nodes.push(h('section', { class: 'pop-path-box' },
      h('h3', { text: t('pop.path') }),
      h('ol', { class: 'pop-path' }, path.map((step) => {
        const offset = (new Date(step.at).getTime() - start) / 1000;
        const detail = step.detail === undefined || step.detail === null ? '' : typeof step.detail === 'object' ? JSON.stringify(step.detail) : String(step.detail);
        return h('li', {},
          h('time', { datetime: step.at, text: `+${clock(offset)}` }),
          label('path', step.kind),
          pathDetail(step.kind, detail) ? `: ${pathDetail(step.kind, detail)}` : '');
      })),
    ));
  }
  const previous = pop.previous ?? { calls: 0, notes: [] };
  const count = Number(previous.calls ?? 0);
  const notes = Array.isArray(previous.notes) ? previous.notes : [];
  const summary = count > 0 ? t('pop.previous.some', { n: count, time: previous.last_at ? dateTime(previous.last_at) : '' }) : t('pop.previous.none');
  const details = h('details', { class: 'pop-previous', open: full && notes.length > 0 },
    h('summary', { text: `${t('pop.previous')}: ${summary}` }),
    notes.length ? h('ol', { class: 'pop-notes' }, notes.map((n) => h('li', {},
      h('div', { class: 'meta', text: [n.at ? dateTime(n.at) : '', n.operator ?? ''].filter(Boolean).join(' · ') }),
      n.text ?? ''))) : null,
  );
  nodes.push(details);
  return nodes;
}

function pathDetail(kind, detail) {
  if (kind === 'lookup_results') return '';
  if (!detail.startsWith('{')) return detail;
  // Structured details: only what an operator reads at a glance.
  try {
    const v = JSON.parse(detail);
    if (v.position !== undefined) return `#${v.position}`;
    if (v.operator !== undefined) return String(v.operator);
  } catch {
    // Not JSON after all: shown as it is.
    return detail;
  }
  return '';
}

// ---- the one-second ticker ----------------------------------------------------------------------

function tick() {
  if (!S.signedIn) return;
  renderConn();
  tickQueue();
  tickOffer();
  tickWrapUp();
  tickPhone();
  for (const dd of document.querySelectorAll('.pop-waited[data-since]:not([data-frozen])')) {
    dd.textContent = duration(secsSince(dd.dataset.since));
  }
  // Keep the socket honest: ping when quiet, and give up on one that stopped answering.
  const ws = S.ws;
  if (ws && ws.readyState === WebSocket.OPEN) {
    const quiet = Date.now() - S.lastRx;
    if (quiet > SILENCE_LIMIT_MS) ws.close(4000, 'no answer');
    else if (quiet > PING_EVERY_MS && Date.now() - S.lastPing > PING_EVERY_MS) {
      S.lastPing = Date.now();
      send({ type: 'ping', ref: `ping${S.lastPing}` });
    }
  }
}

function tickQueue() {
  for (const cell of $('queue-rows').querySelectorAll('td.wait')) {
    const secs = secsSince(cell.dataset.entered);
    cell.textContent = clock(secs);
    cell.parentElement.classList.toggle('long-wait', secs >= LONG_WAIT_SECS);
  }
}

function tickOffer() {
  if (!S.offer) return;
  const left = secsUntil(S.offer.expires_at);
  const box = $('offer-countdown');
  if (left <= 0) {
    // The server withdraws it; until then the buttons stay, the count stops at 0.
    box.textContent = t('offer.expires', { secs: 0 });
    return;
  }
  box.textContent = t('offer.expires', { secs: left });
  box.classList.toggle('urgent', left <= 5);
}

function tickWrapUp() {
  const box = $('wrapup-countdown');
  if (!S.wrapUntil) {
    box.textContent = '';
    return;
  }
  box.textContent = t('wrapup.until', { secs: Math.max(0, secsUntil(S.wrapUntil)) });
}

// ---- keyboard and events ------------------------------------------------------------------------

function toggleLanguage() {
  i18n.setLang(i18n.lang() === 'it' ? 'en' : 'it');
  i18n.apply();
  renderAll();
  const results = [...$('results').querySelectorAll('li.result')];
  for (const li of results) renderResultReferral(li, li.dataset.id, li.querySelector('h4').textContent);
}

function openHelp() {
  const dialog = $('help');
  if (!dialog.open) dialog.showModal();
}

function onKeyDown(e) {
  if (e.defaultPrevented || e.isComposing) return;
  if (e.altKey && !e.ctrlKey && !e.metaKey) {
    const action = {
      Digit1: () => setPresence('available'),
      Digit2: () => setPresence('paused'),
      Digit3: () => setPresence('offline'),
      KeyE: endCall,
      KeyL: toggleLanguage,
    }[e.code];
    if (action && (S.signedIn || e.code === 'KeyL')) {
      e.preventDefault();
      action();
    }
    return;
  }
  if (e.key === 'Escape' && isTyping(e.target) && !$('help').open) {
    e.target.blur();
    $('stage').focus();
    return;
  }
  if (isTyping(e.target) || e.ctrlKey || e.metaKey || e.altKey || !S.signedIn) return;
  const action = {
    '/': () => { if (S.call) { $('search-q').focus(); $('search-q').select(); } },
    a: acceptOffer,
    d: declineOffer,
    n: () => { if (S.call) $('notes').focus(); },
    r: ready,
    m: phone.toggleMute,
    h: phone.toggleHold,
    '?': openHelp,
  }[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
}

function bindUi() {
  $('signin-form').addEventListener('submit', submitSignin);
  $('password-form').addEventListener('submit', submitPassword);
  $('signout').addEventListener('click', signOut);
  $('signout-everywhere').addEventListener('click', signOutEverywhere);
  $('lang-switch').addEventListener('click', toggleLanguage);
  $('help-open').addEventListener('click', openHelp);
  $('presence').addEventListener('submit', (e) => e.preventDefault());
  for (const radio of document.querySelectorAll('input[name="presence"]')) {
    radio.addEventListener('change', () => { if (radio.checked) setPresence(radio.value); });
  }
  $('presence-reason').addEventListener('change', () => setPresence('paused'));
  $('offer-accept').addEventListener('click', acceptOffer);
  $('offer-decline').addEventListener('click', declineOffer);
  $('call-end').addEventListener('click', endCall);
  $('phone-mute').addEventListener('click', phone.toggleMute);
  $('phone-hold').addEventListener('click', phone.toggleHold);
  $('mic-allow').addEventListener('click', () => phone.microphone());
  for (const radio of document.querySelectorAll('input[name="device"]')) {
    radio.addEventListener('change', () => {
      if (!radio.checked) return;
      localStorage.setItem(DEVICE_KEY, radio.value);
      if (radio.value === 'browser') phone.microphone();
      renderPhone();
    });
  }
  $('wrapup-ready').addEventListener('click', ready);
  $('search-q').addEventListener('input', scheduleSearch);
  $('search-near').addEventListener('input', scheduleSearch);
  $('search-lang').addEventListener('change', () => { S.search.lang = $('search-lang').value; sendSearch(); });
  $('chip-open-now').addEventListener('click', () => { S.search.openNow = !S.search.openNow; renderFilters(); sendSearch(); });
  $('notes').addEventListener('input', onNoteInput);
  $('notes').addEventListener('blur', flushNote);
  $('disposition').addEventListener('change', () => setDisposition($('disposition').value));
  $('callbacks-refresh').addEventListener('click', loadCallbacks);
  document.addEventListener('keydown', onKeyDown);
  window.addEventListener('offline', () => {
    // The network is gone: drop the socket now rather than waiting for it to time out.
    const ws = S.ws;
    if (ws) {
      S.ws = null;
      ws.close(4001, 'offline');
    }
    clearTimeout(S.retryTimer);
    if (S.signedIn) setConn('browser_offline');
  });
  window.addEventListener('online', () => {
    S.attempt = 0;
    if (S.signedIn && !S.ws) connect();
  });
  window.addEventListener('beforeunload', flushNote);
}

phone.init({
  send,
  render: () => { if (S.signedIn) renderPhone(); },
  announce: (state) => announce(t(`phone.state.${state}`), state === 'failed' || state === 'hung_up'),
  iceServers: () => S.config.ice_servers ?? [],
});
callback.init({
  api,
  t,
  changed: (message) => {
    if (message) {
      alertBox(message, 'info', 12000);
      announce(message, true);
      loadCallbacks();
    } else {
      renderCallbacks();
    }
  },
  iceServers: () => S.config.ice_servers ?? [],
});
mediation.init({
  api,
  announce,
  alertBox,
  callId: () => (S.call && !S.call.ended && !S.offer ? S.call.call_id : null),
  me: () => S.user?.name ?? null,
  popNodes,
  held: phone.isHeld,
  toggleHold: phone.toggleHold,
  queues: () => ({ languages: S.config.languages, areas: S.config.areas }),
});
recording.init({
  api,
  announce,
  alertBox,
  callId: () => (S.call && !S.call.ended && !S.offer && !mediation.isGuest(S.call.call_id) ? S.call.call_id : null),
});
sms.init({
  api,
  announce,
  callId: () => (S.call && !S.call.ended && !S.offer && !mediation.isGuest(S.call.call_id) ? S.call.call_id : null),
  hasReferrals: () => (S.call?.referrals.size ?? 0) > 0,
});
boot();
