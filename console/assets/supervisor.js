// The supervisors' page: the live wallboard (/ws/wallboard), the call log with filters, keyset
// pages and a call's timeline (/api/calls…), the KPIs with their definitions and hand-drawn SVG
// charts (/api/kpis). Italian by default, English on request (kept in localStorage
// `helpline.lang`, as the operator page does). No build step, no external network.

const TEXTS = {
  it: {
    'app.title': 'Helpline — supervisione', 'app.name': 'Helpline — supervisione', 'lang.switch': 'English', 'signout': 'Esci',
    'tab.wallboard': 'Pannello', 'tab.log': 'Registro chiamate', 'tab.kpis': 'Indicatori',
    'signin.title': 'Accesso', 'signin.name': 'Nome utente', 'signin.password': 'Password', 'signin.submit': 'Accedi',
    'signin.bad': 'Nome utente o password errati.', 'signin.choose_password': 'Prima scegli la tua password nella console operatore (/console), poi torna qui.', 'signin.role': 'Questa pagina è per supervisori; come operatore vedi solo le tue chiamate.',
    'wb.title': 'Pannello in tempo reale', 'wb.connecting': 'Connessione…', 'wb.live': 'Aggiornato {time}', 'wb.offline': 'Disconnesso — nuovo tentativo tra {secs} s',
    'wb.in_menu': 'Nel menu', 'wb.in_queue': 'In coda', 'wb.talking': 'In conversazione', 'wb.longest': 'Attesa più lunga',
    'wb.sl': 'Livello di servizio oggi', 'wb.abandon': 'Abbandoni oggi', 'wb.asa': 'Tempo medio di risposta oggi', 'wb.calls': 'Chiamate oggi',
    'wb.queue_by': 'In coda per lingua e ambito', 'wb.menu_by': 'Nel menu per lingua e ambito', 'wb.count': 'Chiamate', 'wb.waiting_since': 'Attende da',
    'wb.operators': 'Operatori', 'wb.state': 'Stato', 'wb.since': 'Da', 'wb.none': 'nessuno',
    'p.available': 'disponibile', 'p.offered': 'chiamata in arrivo', 'p.on_call': 'in chiamata', 'p.wrap_up': 'post-chiamata', 'p.paused': 'in pausa', 'p.offline': 'non in linea',
    'log.title': 'Registro chiamate', 'log.more': 'Altre chiamate', 'log.count': '{n} chiamate mostrate', 'log.empty': 'Nessuna chiamata con questi filtri.',
    'f.from': 'Dal', 'f.to': 'Al', 'f.any': 'tutte', 'f.apply': 'Filtra', 'f.csv': 'Esporta CSV',
    'col.start': 'Inizio', 'col.channel': 'Canale', 'col.language': 'Lingua', 'col.area': 'Ambito', 'col.town': 'Comune', 'col.outcome': 'Esito',
    'col.menu': 'Menu', 'col.queue': 'Coda', 'col.talk': 'Conversazione', 'col.operator': 'Operatore', 'col.disposition': 'Esito operatore', 'col.number': 'Numero',
    'o.self_service': 'self-service', 'o.answered': 'risposta', 'o.hung_up_in_queue': 'abbandonata in coda', 'o.hung_up_in_menu': 'chiusa nel menu',
    'o.callback': 'richiamata richiesta', 'o.out_of_hours': 'fuori orario', 'o.queued': 'in coda',
    'call.title': 'Chiamata', 'call.close': 'Chiudi', 'call.guessed': '(dedotta dal prefisso)',
    't.step': 'Passo {seq}', 't.pressed': 'tasti {digits}', 't.played': 'ascoltato: {prompts}', 't.offer': 'Offerta a {who}: {status}', 't.missed': 'persa',
    't.note': 'Nota di {who}', 't.referral': 'Servizio indicato da {who}: {name}',
    't.text': 'SMS ({who}) via {via}: {segments} segmenti {encoding}, {status}', 't.text.caller': 'chiesto da chi chiama',
    't.monitor.listen': '{who} ascolta', 't.monitor.whisper': '{who} suggerisce all\'operatore', 't.monitor.barge': '{who} interviene', 't.monitor.monitor_end': '{who} lascia la chiamata',
    't.media': 'Telefono di {who}: {state}', 't.media.connecting': 'in collegamento', 't.media.connected': 'audio collegato', 't.media.reconnecting': 'connessione persa, in attesa',
    't.media.ice_restart': 'connessione ripresa (ICE restart)', 't.media.failed': 'non riuscito', 't.media.hung_up': 'il chiamante ha riagganciato', 't.media.ended': 'chiamata chiusa',
    't.recording.recording_refused': '{who}: registrazione rifiutata', 't.recording.recording_start': '{who} avvia la registrazione',
    't.recording.recording_stop': '{who} interrompe la registrazione', 't.recording.play_recording': '{who} ascolta la registrazione',
    'rec.title': 'Registrazioni', 'rec.item': 'Registrazione di {who}, {time} ({secs} s)', 'rec.running': 'Registrazione in corso ({who}, {time})',
    'rec.caller': 'chi chiama',
    't.mediation.mediator_invite': '{who} invita il mediatore {detail}', 't.mediation.mediator_join': '{who} partecipa come mediatore',
    't.mediation.mediator_leave': '{who} lascia la mediazione', 't.mediation.operator_leave': '{who} lascia la chiamata al mediatore {detail}',
    'wb.live_calls': 'Chiamate in corso', 'wb.live_none': 'Nessuna chiamata in corso.', 'col.call': 'Chiamata', 'col.actions': 'Azioni',
    'mon.listen': 'Ascolta', 'mon.whisper': 'Suggerisci', 'mon.barge': 'Intervieni', 'mon.stop': 'Chiudi',
    'mon.idle': 'Non stai ascoltando nessuna chiamata.', 'mon.connecting': 'Collegamento alla chiamata {call}…', 'mon.listening': 'Ascolti la chiamata {call} (nessuno ti sente).',
    'mon.whispering': 'Suggerisci all\'operatore della chiamata {call} (chi chiama non ti sente).', 'mon.barging': 'Sei in conferenza nella chiamata {call}.',
    'mon.failed': 'Non è stato possibile collegarsi: {msg}', 'mon.mic': 'Serve il microfono per suggerire o intervenire.',
    'kpi.title': 'Indicatori di servizio', 'kpi.group': 'Raggruppa per', 'g.day': 'giorno', 'g.hour': 'ora', 'g.language': 'lingua', 'g.area': 'ambito',
    'kpi.key': 'Gruppo', 'kpi.calls': 'Chiamate', 'kpi.self': 'Self-service', 'kpi.queued': 'In coda', 'kpi.answered': 'Risposte', 'kpi.abandoned': 'Abbandonate',
    'kpi.sl': 'Livello di servizio', 'kpi.asa': 'ASA (s)', 'kpi.abandon_rate': 'Tasso di abbandono', 'kpi.self_rate': 'Tasso self-service', 'kpi.total': 'Totale',
    'kpi.cb_requested': 'Richiamate richieste', 'kpi.cb_reached': 'Richiamate riuscite', 'kpi.cb_unreachable': 'Irraggiungibili',
    'def.callbacks': 'Richieste: chiamate terminate con una richiesta di richiamata (nell’ora della chiamata). Riuscite e irraggiungibili: richiamate che hanno raggiunto la persona, o chiuse dopo l’ultimo tentativo, nell’ora in cui è successo.',
    'kpi.definitions': 'Definizioni', 'kpi.time': 'Giorni e ore', 'kpi.by_language': 'Livello di servizio per lingua (il più basso in alto)',
    'def.sl': 'Chiamate risposte entro 20 secondi dall’ingresso in coda ÷ (chiamate risposte + chiamate abbandonate dopo più di 5 secondi). Gli abbandoni entro 5 secondi non contano; quelli più lunghi contano contro il livello di servizio.',
    'def.asa': 'Tempo medio di risposta: attesa in coda totale delle chiamate risposte ÷ chiamate risposte.',
    'def.abandon': 'Chiamate abbandonate in coda (anche quelle entro 5 secondi) ÷ chiamate entrate in coda.',
    'def.self': 'Chiamate che hanno ascoltato i servizi vicini (esito self-service) ÷ tutte le chiamate.',
    'def.time': 'Ora locale di Roma; una chiamata conta nell’ora in cui è iniziata. Dopo il periodo di conservazione restano solo questi conteggi, per ora.',
    'chart.per_hour': 'Chiamate per ora del giorno', 'chart.sl': 'Livello di servizio e abbandoni per giorno',
    'chart.waits': 'Attese per giorno (tempo medio di risposta e attesa massima, s)', 'chart.empty': 'Nessun dato nel periodo.',
    'chart.sl_line': 'livello di servizio', 'chart.abandon_line': 'abbandoni', 'chart.asa': 'ASA', 'chart.max': 'attesa massima',
    'error': 'Errore: {msg}',
  },
  en: {
    'app.title': 'Helpline — supervision', 'app.name': 'Helpline — supervision', 'lang.switch': 'Italiano', 'signout': 'Sign out',
    'tab.wallboard': 'Wallboard', 'tab.log': 'Call log', 'tab.kpis': 'KPIs',
    'signin.title': 'Sign in', 'signin.name': 'User name', 'signin.password': 'Password', 'signin.submit': 'Sign in',
    'signin.bad': 'Wrong user name or password.', 'signin.choose_password': 'First choose your own password in the operator console (/console), then come back.', 'signin.role': 'This page is for supervisors; as an operator you see only your own calls.',
    'wb.title': 'Live wallboard', 'wb.connecting': 'Connecting…', 'wb.live': 'Updated {time}', 'wb.offline': 'Disconnected — retrying in {secs} s',
    'wb.in_menu': 'In the menu', 'wb.in_queue': 'In queue', 'wb.talking': 'Talking', 'wb.longest': 'Longest wait',
    'wb.sl': 'Service level today', 'wb.abandon': 'Abandoned today', 'wb.asa': 'Average speed of answer today', 'wb.calls': 'Calls today',
    'wb.queue_by': 'In queue by language and area', 'wb.menu_by': 'In the menu by language and area', 'wb.count': 'Calls', 'wb.waiting_since': 'Waiting since',
    'wb.operators': 'Operators', 'wb.state': 'State', 'wb.since': 'Since', 'wb.none': 'none',
    'p.available': 'available', 'p.offered': 'call offered', 'p.on_call': 'on a call', 'p.wrap_up': 'wrap-up', 'p.paused': 'paused', 'p.offline': 'offline',
    'log.title': 'Call log', 'log.more': 'More calls', 'log.count': '{n} calls shown', 'log.empty': 'No call matches these filters.',
    'f.from': 'From', 'f.to': 'To', 'f.any': 'any', 'f.apply': 'Filter', 'f.csv': 'Export CSV',
    'col.start': 'Start', 'col.channel': 'Channel', 'col.language': 'Language', 'col.area': 'Area', 'col.town': 'Town', 'col.outcome': 'Outcome',
    'col.menu': 'Menu', 'col.queue': 'Queue', 'col.talk': 'Talk', 'col.operator': 'Operator', 'col.disposition': 'Disposition', 'col.number': 'Number',
    'o.self_service': 'self-service', 'o.answered': 'answered', 'o.hung_up_in_queue': 'abandoned in queue', 'o.hung_up_in_menu': 'hung up in menu',
    'o.callback': 'callback requested', 'o.out_of_hours': 'out of hours', 'o.queued': 'queued',
    'call.title': 'Call', 'call.close': 'Close', 'call.guessed': '(guessed from the prefix)',
    't.step': 'Step {seq}', 't.pressed': 'pressed {digits}', 't.played': 'heard: {prompts}', 't.offer': 'Offered to {who}: {status}', 't.missed': 'missed',
    't.note': 'Note by {who}', 't.referral': 'Service given by {who}: {name}',
    't.text': 'SMS ({who}) via {via}: {segments} segments {encoding}, {status}', 't.text.caller': 'asked by the caller',
    't.monitor.listen': '{who} listens', 't.monitor.whisper': '{who} whispers to the operator', 't.monitor.barge': '{who} barges in', 't.monitor.monitor_end': '{who} leaves the call',
    't.media': '{who}\'s phone: {state}', 't.media.connecting': 'connecting', 't.media.connected': 'audio connected', 't.media.reconnecting': 'connection lost, waiting',
    't.media.ice_restart': 'connection back (ICE restart)', 't.media.failed': 'failed', 't.media.hung_up': 'the caller hung up', 't.media.ended': 'call ended',
    't.recording.recording_refused': '{who}: recording refused', 't.recording.recording_start': '{who} starts recording',
    't.recording.recording_stop': '{who} stops recording', 't.recording.play_recording': '{who} plays the recording',
    'rec.title': 'Recordings', 'rec.item': 'Recording by {who}, {time} ({secs} s)', 'rec.running': 'Recording under way ({who}, {time})',
    'rec.caller': 'the caller',
    't.mediation.mediator_invite': '{who} invites the mediator {detail}', 't.mediation.mediator_join': '{who} joins as mediator',
    't.mediation.mediator_leave': '{who} leaves the mediation', 't.mediation.operator_leave': '{who} leaves the call to the mediator {detail}',
    'wb.live_calls': 'Live calls', 'wb.live_none': 'No live call.', 'col.call': 'Call', 'col.actions': 'Actions',
    'mon.listen': 'Listen', 'mon.whisper': 'Whisper', 'mon.barge': 'Barge', 'mon.stop': 'Hang up',
    'mon.idle': 'You are not on any call.', 'mon.connecting': 'Joining call {call}…', 'mon.listening': 'Listening to call {call} (nobody hears you).',
    'mon.whispering': 'Whispering to the operator of call {call} (the caller does not hear you).', 'mon.barging': 'In a three-way call on call {call}.',
    'mon.failed': 'Could not join: {msg}', 'mon.mic': 'The microphone is needed to whisper or barge in.',
    'kpi.title': 'Service KPIs', 'kpi.group': 'Group by', 'g.day': 'day', 'g.hour': 'hour', 'g.language': 'language', 'g.area': 'area',
    'kpi.key': 'Group', 'kpi.calls': 'Calls', 'kpi.self': 'Self-service', 'kpi.queued': 'Queued', 'kpi.answered': 'Answered', 'kpi.abandoned': 'Abandoned',
    'kpi.sl': 'Service level', 'kpi.asa': 'ASA (s)', 'kpi.abandon_rate': 'Abandonment rate', 'kpi.self_rate': 'Self-service rate', 'kpi.total': 'Total',
    'kpi.cb_requested': 'Callbacks requested', 'kpi.cb_reached': 'Callbacks reached', 'kpi.cb_unreachable': 'Unreachable',
    'def.callbacks': 'Requested: calls that ended with a callback request (in the call’s hour). Reached and unreachable: callbacks that reached the person, or were closed after the last attempt, in the hour that happened.',
    'kpi.definitions': 'Definitions', 'kpi.time': 'Days and hours', 'kpi.by_language': 'Service level by language (lowest first)',
    'def.sl': 'Calls answered within 20 seconds of entering the queue ÷ (answered calls + calls abandoned after more than 5 seconds). Abandons within 5 seconds are left out; longer ones count against the service level.',
    'def.asa': 'Average speed of answer: total queue wait of answered calls ÷ answered calls.',
    'def.abandon': 'Calls abandoned in the queue (including those within 5 seconds) ÷ calls that entered the queue.',
    'def.self': 'Calls that heard nearby services read back (outcome self-service) ÷ all calls.',
    'def.time': 'Europe/Rome local time; a call counts in the hour it started. After the retention period only these counts remain, per hour.',
    'chart.per_hour': 'Calls per hour of the day', 'chart.sl': 'Service level and abandonment per day',
    'chart.waits': 'Waits per day (average speed of answer and longest wait, s)', 'chart.empty': 'No data in this period.',
    'chart.sl_line': 'service level', 'chart.abandon_line': 'abandonment', 'chart.asa': 'ASA', 'chart.max': 'longest wait',
    'error': 'Error: {msg}',
  },
};

let lang = localStorage.getItem('helpline.lang') === 'en' ? 'en' : 'it';

export function t(key, args = {}) {
  const s = TEXTS[lang][key] ?? TEXTS.it[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (args[k] ?? ''));
}

function applyTexts(root = document) {
  document.documentElement.lang = lang;
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  document.title = t('app.title');
}

const $ = (sel) => document.querySelector(sel);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString(lang === 'it' ? 'it-IT' : 'en-GB', { timeZone: 'Europe/Rome' }) : '');
const fmtPct = (x) => (x == null ? '—' : `${(x * 100).toFixed(1)} %`);
const fmtSecs = (x) => (x == null ? '—' : `${Math.round(x)} s`);
const dash = (v) => (v == null || v === '' ? '—' : String(v));
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v; else if (k.startsWith('on')) e.addEventListener(k.slice(2), v); else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ''));
  return e;
}

// ---------------------------------------------------------------- session

let me = null;

async function session() {
  const r = await fetch('/api/session', { credentials: 'same-origin' });
  return r.ok ? r.json() : null;
}

async function signIn(ev) {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const r = await fetch('/api/session', {
    method: 'POST', headers: { 'content-type': 'application/json' }, credentials: 'same-origin',
    body: JSON.stringify({ name: form.get('name'), password: form.get('password') }),
  });
  if (!r.ok) { $('#signin-error').textContent = t('signin.bad'); return; }
  start(await r.json());
}

async function signOut() {
  const s = await session();
  await fetch('/api/session', { method: 'DELETE', headers: { 'x-csrf-token': s?.csrf_token ?? '' }, credentials: 'same-origin' });
  location.reload();
}

// ---------------------------------------------------------------- tabs

function showTab(name) {
  for (const b of document.querySelectorAll('#tabs button')) b.setAttribute('aria-pressed', String(b.dataset.tab === name));
  for (const s of document.querySelectorAll('section.tab')) s.hidden = s.id !== name;
  if (name === 'log' && !$('#log-table tbody').children.length) loadLog(true);
  if (name === 'kpis') loadKpis();
  history.replaceState(null, '', `#${name}`);
}

// ---------------------------------------------------------------- wallboard

let wbSocket = null;
let lastBoard = null;
let lastBoardAt = null;

function connectWallboard() {
  const proto = location.protocol === 'https:' ? 'wss' : 'ws';
  wbSocket = new WebSocket(`${proto}://${location.host}/ws/wallboard`);
  wbSocket.onmessage = (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === 'wallboard') { lastBoard = msg; lastBoardAt = new Date().toISOString(); renderBoard(); }
  };
  wbSocket.onclose = () => {
    const secs = 3;
    $('#wb-status').textContent = t('wb.offline', { secs });
    setTimeout(connectWallboard, secs * 1000);
  };
}

function since(iso) {
  if (!iso) return '—';
  const s = Math.max(0, Math.round((Date.now() - new Date(iso).getTime()) / 1000));
  return s >= 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s} s`;
}

function renderBoard() {
  const b = lastBoard;
  if (!b) return;
  $('#wb-status').textContent = t('wb.live', { time: fmtTime(lastBoardAt) });
  const sum = (xs) => xs.reduce((n, x) => n + x.count, 0);
  $('#wb-menu').textContent = sum(b.in_menu);
  $('#wb-queue').textContent = sum(b.in_queue);
  $('#wb-talking').textContent = b.talking;
  $('#wb-longest').textContent = since(b.longest_wait_since);
  $('#wb-sl').textContent = fmtPct(b.today.service_level);
  $('#wb-abandon').textContent = fmtPct(b.today.abandonment_rate);
  $('#wb-asa').textContent = fmtSecs(b.today.asa_secs);
  $('#wb-calls').textContent = b.today.calls;
  $('#wb-queue-table tbody').replaceChildren(...b.in_queue.map((q) =>
    el('tr', {}, el('td', {}, q.language), el('td', {}, dash(q.area)), el('td', {}, String(q.count)), el('td', {}, since(q.oldest_since)))));
  $('#wb-menu-table tbody').replaceChildren(...b.in_menu.map((q) =>
    el('tr', {}, el('td', {}, dash(q.language)), el('td', {}, dash(q.area)), el('td', {}, String(q.count)))));
  const states = Object.entries(b.operators_by_state).map(([s, n]) => `${t(`p.${s}`)}: ${n}`).join(' · ');
  $('#wb-op-states').textContent = states || t('wb.none');
  $('#wb-operators tbody').replaceChildren(...b.operators.map((o) =>
    el('tr', {}, el('td', {}, o.name), el('td', { class: `presence ${o.presence}` }, t(`p.${o.presence}`)), el('td', {}, since(o.since)))));
  renderLive(b.live_calls ?? []);
}

// ---------------------------------------------------------------- listen, whisper, barge

const ICE_GATHER_WAIT_MS = 500;
/** The supervisor's own leg: at most one call at a time. */
const M = { pc: null, callId: null, mode: null, state: 'idle', error: null, mic: null };
let liveKey = null;

/** The live calls' table, rebuilt only when its calls or the monitoring change (keeps focus). */
function renderLive(calls) {
  if (M.callId && !calls.some((c) => c.call_id === M.callId) && M.state !== 'connecting') stopMonitor(false);
  const key = JSON.stringify([lang, M.callId, M.mode, M.state, calls.map((c) => [c.call_id, c.operator])]);
  const tbody = $('#wb-live tbody');
  if (key === liveKey) {
    for (const c of calls) {
      const cell = tbody.querySelector(`tr[data-call="${CSS.escape(c.call_id)}"] td.since`);
      if (cell) cell.textContent = since(c.since);
    }
    return;
  }
  const focused = document.activeElement?.dataset?.action ? [document.activeElement.closest('tr')?.dataset.call, document.activeElement.dataset.action] : null;
  liveKey = key;
  $('#wb-live-empty').hidden = calls.length > 0;
  tbody.replaceChildren(...calls.map((c) => {
    const mine = M.callId === c.call_id;
    const button = (action) => el('button', {
      type: 'button', 'data-action': action, 'aria-pressed': String(mine && M.mode === action),
      onclick: () => (action === 'stop' ? stopMonitor(true) : monitor(c.call_id, action)),
    }, t(`mon.${action}`));
    const actions = ['listen', 'whisper', 'barge'].map(button);
    if (mine) actions.push(button('stop'));
    return el('tr', { 'data-call': c.call_id }, el('td', { class: 'masked' }, c.call_id.slice(0, 12)), el('td', {}, c.language), el('td', {}, dash(c.area)),
      el('td', {}, dash(c.operator)), el('td', { class: 'since' }, since(c.since)), el('td', { class: 'actions' }, ...actions));
  }));
  if (focused) tbody.querySelector(`tr[data-call="${CSS.escape(focused[0] ?? '')}"] button[data-action="${focused[1]}"]`)?.focus();
  renderMonitorState();
}

function renderMonitorState() {
  const s = $('#monitor-state');
  s.dataset.state = M.state;
  s.dataset.mode = M.mode ?? '';
  const call = (M.callId ?? '').slice(0, 12);
  s.textContent = M.state === 'failed' ? t('mon.failed', { msg: M.error ?? '' })
    : M.state === 'connecting' ? t('mon.connecting', { call })
    : M.state === 'connected' ? t({ listen: 'mon.listening', whisper: 'mon.whispering', barge: 'mon.barging' }[M.mode], { call })
    : t('mon.idle');
}

async function csrfToken() {
  return (await session())?.csrf_token ?? '';
}

async function monitorRequest(method, callId, body) {
  const r = await fetch(`/api/calls/${encodeURIComponent(callId)}/monitor`, {
    method, credentials: 'same-origin',
    headers: { 'content-type': 'application/json', 'x-csrf-token': await csrfToken() },
    body: body ? JSON.stringify(body) : undefined,
  });
  const answer = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error(answer?.message ?? String(r.status));
  return answer;
}

function gathered(pc) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const check = () => { if (pc.iceGatheringState === 'complete') { pc.removeEventListener('icegatheringstatechange', check); resolve(); } };
    pc.addEventListener('icegatheringstatechange', check);
    setTimeout(resolve, ICE_GATHER_WAIT_MS);
  });
}

/** Listens to, whispers into or barges into a live call: a new leg, or the same leg's new mode. */
async function monitor(callId, mode) {
  try {
    if (M.pc && M.callId === callId && M.state === 'connected') {
      await monitorRequest('PUT', callId, { mode });
      M.mode = mode;
      liveKey = null;
      renderBoard();
      return;
    }
    await stopMonitor(true);
    if (!M.mic || !M.mic.getAudioTracks().some((tr) => tr.readyState === 'live')) {
      // Asked even to listen, so switching to whisper or barge needs no new connection.
      M.mic = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true }, video: false })
        .catch(() => null);
    }
    if (!M.mic) throw new Error(t('mon.mic'));
    Object.assign(M, { callId, mode, state: 'connecting', error: null });
    liveKey = null;
    renderBoard();
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    M.pc = pc;
    for (const track of M.mic.getAudioTracks()) pc.addTrack(track, M.mic);
    pc.ontrack = (e) => {
      const audio = $('#monitor-audio');
      audio.srcObject = e.streams[0] ?? new MediaStream([e.track]);
      audio.play().catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc !== M.pc) return;
      if (pc.connectionState === 'connected') M.state = 'connected';
      else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') { M.state = 'failed'; M.error = pc.connectionState; }
      liveKey = null;
      renderBoard();
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc);
    const answer = await monitorRequest('POST', callId, { mode, sdp: pc.localDescription.sdp });
    if (pc !== M.pc) return;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
  } catch (e) {
    M.pc?.close();
    Object.assign(M, { pc: null, state: 'failed', error: e.message });
    liveKey = null;
    renderBoard();
  }
}

/** Hangs the supervisor's leg up (`tell`: the server too, when the call is still live). */
async function stopMonitor(tell) {
  const { pc, callId } = M;
  if (!pc && !callId) return;
  Object.assign(M, { pc: null, callId: null, mode: null, state: 'idle', error: null });
  pc?.close();
  $('#monitor-audio').srcObject = null;
  liveKey = null;
  if (tell && callId) await monitorRequest('DELETE', callId).catch(() => {});
  renderBoard();
}

// ---------------------------------------------------------------- call log

let nextCursor = null;

function logQuery() {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData($('#log-filter'))) if (v) p.set(k, v);
  return p;
}

async function loadLog(fresh) {
  const p = logQuery();
  $('#log-csv').href = `/api/calls.csv?${p}`;
  if (!fresh && nextCursor) p.set('after', nextCursor);
  p.set('limit', '50');
  const r = await fetch(`/api/calls?${p}`, { credentials: 'same-origin' });
  const body = await r.json();
  if (!r.ok) { $('#log-error').textContent = t('error', { msg: body.message }); return; }
  $('#log-error').textContent = '';
  const tbody = $('#log-table tbody');
  if (fresh) tbody.replaceChildren();
  for (const c of body.calls) {
    tbody.append(el('tr', { class: 'call', 'data-call': c.call_id, tabindex: '0', onclick: () => openCall(c.call_id), onkeydown: (e) => { if (e.key === 'Enter') openCall(c.call_id); } },
      el('td', {}, fmtTime(c.started_at)), el('td', {}, c.channel), el('td', {}, dash(c.language) + (c.language_guessed ? '*' : '')),
      el('td', {}, dash(c.area)), el('td', {}, dash(c.town ?? c.cap)), el('td', { class: `outcome ${c.outcome ?? ''}` }, c.outcome ? t(`o.${c.outcome}`) : '—'),
      el('td', { class: 'num' }, fmtSecs(c.menu_secs)), el('td', { class: 'num' }, fmtSecs(c.queue_secs)), el('td', { class: 'num' }, fmtSecs(c.talk_secs)),
      el('td', {}, dash(c.operator)), el('td', {}, dash(c.disposition)), el('td', { class: 'masked' }, dash(c.masked_number))));
  }
  nextCursor = body.next;
  $('#log-more').hidden = !nextCursor;
  const n = tbody.children.length;
  $('#log-count').textContent = n ? t('log.count', { n }) : t('log.empty');
}

async function openCall(id) {
  const r = await fetch(`/api/calls/${encodeURIComponent(id)}`, { credentials: 'same-origin' });
  const body = await r.json();
  if (!r.ok) { $('#log-error').textContent = t('error', { msg: body.message }); return; }
  const c = body.call;
  $('#call-id').textContent = c.call_id;
  const facts = [
    ['col.start', fmtTime(c.started_at)], ['col.channel', c.channel],
    ['col.language', `${dash(c.language)} ${c.language_guessed ? t('call.guessed') : ''}`], ['col.area', dash(c.area)],
    ['col.town', `${dash(c.town)} ${c.cap ?? ''}`], ['col.outcome', c.outcome ? t(`o.${c.outcome}`) : '—'],
    ['col.menu', fmtSecs(c.menu_secs)], ['col.queue', fmtSecs(c.queue_secs)], ['col.talk', fmtSecs(c.talk_secs)],
    ['col.operator', dash(c.operator)], ['col.disposition', dash(c.disposition)], ['col.number', dash(c.masked_number)],
  ];
  $('#call-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', {}, t(k)), el('dd', {}, v)]));
  $('#call-timeline').replaceChildren(...body.timeline.map((e) => {
    const at = `+${(e.offset_ms / 1000).toFixed(1)} s`;
    let text;
    if (e.type === 'step') {
      const parts = [`${t('t.step', { seq: e.seq })}: ${e.event_kind}`];
      if (e.digits) parts.push(t('t.pressed', { digits: e.digits }));
      if (e.prompts.length) parts.push(t('t.played', { prompts: e.prompts.join(', ') }));
      const decisions = e.log.filter((l) => ['decision', 'language_chosen', 'area_chosen', 'node_entered'].includes(l.kind))
        .map((l) => l.kind === 'node_entered' ? `→ ${l.node}` : `${l.kind} ${l.value ?? l.language ?? l.area ?? ''}`.trim());
      if (decisions.length) parts.push(decisions.join(' · '));
      text = parts.join(' — ');
    } else if (e.type === 'offer') {
      text = t('t.offer', { who: e.operator ?? '?', status: e.status }) + (e.missed ? ` (${t('t.missed')})` : '');
    } else if (e.type === 'monitor') {
      text = t(`t.monitor.${e.action}`, { who: e.supervisor });
    } else if (e.type === 'media') {
      text = t('t.media', { who: e.operator ?? '?', state: t(`t.media.${e.state}`) }) + (e.reason ? ` (${e.reason})` : '');
    } else if (e.type === 'mediation') {
      text = t(`t.mediation.${e.action}`, { who: e.user, detail: e.detail });
    } else if (e.type === 'recording') {
      text = t(`t.recording.${e.action}`, { who: e.user === 'caller' ? t('rec.caller') : e.user });
    } else if (e.type === 'text') {
      text = t('t.text', { who: e.operator ?? t('t.text.caller'), via: e.via, segments: e.segments, encoding: e.encoding.toUpperCase(), status: e.status })
        + (e.detail ? ` (${e.detail})` : '');
    } else if (e.type === 'note') {
      text = `${t('t.note', { who: e.operator ?? '?' })}: ${e.text}`;
    } else {
      text = t('t.referral', { who: e.operator ?? '?', name: e.service_name });
    }
    return el('li', { class: `tl ${e.type}${e.missed ? ' missed' : ''}` }, el('time', { datetime: e.at, title: fmtTime(e.at) }, at), ' ', text);
  }));
  // The call's recordings (supervisors only): each played on demand, every playing audited.
  const recordings = body.recordings ?? [];
  $('#call-recordings-title').hidden = recordings.length === 0;
  $('#call-recordings').replaceChildren(...recordings.map((r) => {
    if (!r.ended_at) return el('li', {}, t('rec.running', { who: r.started_by ?? '?', time: fmtTime(r.started_at) }));
    const label = t('rec.item', { who: r.started_by ?? '?', time: fmtTime(r.started_at), secs: ((r.duration_ms ?? 0) / 1000).toFixed(1) });
    const audio = el('audio', { controls: '', preload: 'none', src: `/api/recordings/${encodeURIComponent(r.id)}`, 'aria-label': label });
    return el('li', { class: 'recording' }, el('span', {}, label), ' ', audio);
  }));
  $('#call').hidden = false;
  $('#call').scrollIntoView({ block: 'nearest' });
}

// ---------------------------------------------------------------- KPIs and charts

const SVG = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text != null) e.textContent = text;
  return e;
}

/**
 * A y axis from 0 to at least `max` with "nice" steps (1, 2 or 5 × 10^k, at most five of them), so
 * every tick label differs: `integer` data (counts) never gets a step below 1 (a tiny range gets
 * fewer ticks), other data shows as many decimals as the step needs.
 */
function niceAxis(max, { integer = false } = {}) {
  const top = Number.isFinite(max) && max > 0 ? max : 1;
  const raw = top / 5;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw * (1 - 1e-9));
  if (integer) step = Math.max(1, step);
  const decimals = step < 1 ? Math.ceil(-Math.log10(step) - 1e-9) : 0;
  const n = Math.max(1, Math.ceil(top / step - 1e-9));
  const ticks = Array.from({ length: n + 1 }, (_, i) => Number((i * step).toFixed(decimals)));
  return { ticks, max: ticks[n], label: (v) => v.toFixed(decimals) };
}

/** The service-level chart's axis: shares from 0 % to 100 %. */
const SHARE_AXIS = { ticks: [0, 0.25, 0.5, 0.75, 1], max: 1, label: (v) => `${Math.round(v * 100)}%` };

/** A chart frame: width × height with margins, a y axis with a gridline at each of `axis.ticks`. */
function frame(axis, title) {
  const W = 560, H = 220, m = { l: 48, r: 12, t: 12, b: 36 };
  const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': title, class: 'chart' });
  const y = (v) => m.t + (H - m.t - m.b) * (1 - v / (axis.max || 1));
  for (const v of axis.ticks) {
    root.append(svg('line', { x1: m.l, x2: W - m.r, y1: y(v), y2: y(v), class: 'grid' }));
    root.append(svg('text', { x: m.l - 6, y: y(v) + 4, 'text-anchor': 'end', class: 'tick y' }, axis.label(v)));
  }
  return { root, W, H, m, y };
}

function empty(container) {
  container.replaceChildren(el('p', { class: 'muted' }, t('chart.empty')));
}

/** Bars: one per label (counts). */
function barChart(container, labels, values, title, fmt = (v) => String(Math.round(v))) {
  if (!labels.length) return empty(container);
  const f = frame(niceAxis(Math.max(0, ...values), { integer: true }), title);
  const band = (f.W - f.m.l - f.m.r) / labels.length;
  labels.forEach((label, i) => {
    const x = f.m.l + i * band;
    const h = f.y(0) - f.y(values[i]);
    const bar = svg('rect', { x: x + band * 0.15, width: band * 0.7, y: f.y(values[i]), height: Math.max(0, h), class: 'bar' });
    bar.append(svg('title', {}, `${label}: ${fmt(values[i])}`));
    f.root.append(bar);
    if (labels.length <= 24 || i % Math.ceil(labels.length / 12) === 0) {
      f.root.append(svg('text', { x: x + band / 2, y: f.H - f.m.b + 14, 'text-anchor': 'middle', class: 'tick x' }, label));
    }
  });
  container.replaceChildren(f.root);
}

/** Lines: several series over the same labels, on `axis`; `null` values leave a gap. */
function lineChart(container, labels, series, axis, fmt, title) {
  if (!labels.length) return empty(container);
  const f = frame(axis, title);
  const step = labels.length > 1 ? (f.W - f.m.l - f.m.r) / (labels.length - 1) : 0;
  const x = (i) => f.m.l + (labels.length > 1 ? i * step : (f.W - f.m.l - f.m.r) / 2);
  series.forEach((s, k) => {
    let d = '';
    s.values.forEach((v, i) => {
      if (v == null) return;
      d += `${d && s.values[i - 1] != null ? 'L' : 'M'}${x(i).toFixed(1)},${f.y(v).toFixed(1)} `;
      const dot = svg('circle', { cx: x(i), cy: f.y(v), r: 3, class: `dot s${k}` });
      dot.append(svg('title', {}, `${labels[i]} ${s.name}: ${fmt(v)}`));
      f.root.append(dot);
    });
    f.root.append(svg('path', { d, class: `line s${k}` }));
    f.root.append(svg('text', { x: f.m.l + 8 + k * 160, y: f.H - 4, class: `legend s${k}` }, `■ ${s.name}`));
  });
  const every = Math.ceil(labels.length / 8);
  labels.forEach((label, i) => {
    if (i % every === 0) f.root.append(svg('text', { x: x(i), y: f.H - f.m.b + 14, 'text-anchor': 'middle', class: 'tick x' }, label.slice(5)));
  });
  container.replaceChildren(f.root);
}

function kpiQuery(group) {
  const p = new URLSearchParams();
  for (const [k, v] of new FormData($('#kpi-filter'))) if (v && k !== 'group') p.set(k, v);
  if (group) p.set('group', group);
  return p;
}

async function fetchKpis(group) {
  const r = await fetch(`/api/kpis?${kpiQuery(group)}`, { credentials: 'same-origin' });
  const body = await r.json();
  if (!r.ok) throw new Error(body.message);
  return body;
}

async function loadKpis() {
  const group = new FormData($('#kpi-filter')).get('group') || 'day';
  $('#kpi-csv').href = `/api/kpis.csv?${kpiQuery(group)}`;
  try {
    const [table, hours, days, languages] = await Promise.all([fetchKpis(group), fetchKpis('hour'), fetchKpis('day'), fetchKpis('language')]);
    $('#kpi-error').textContent = '';
    // Every language side by side, the lowest service level first: callers of a minority
    // language waiting longer is the first thing a supervisor must see.
    const bySl = [...languages.rows].sort((a, b) => (a.service_level ?? 2) - (b.service_level ?? 2) || b.queued - a.queued);
    $('#kpi-languages tbody').replaceChildren(...bySl.map((r) => el('tr', {}, el('th', { scope: 'row' }, r.key),
      el('td', { class: 'num' }, el('meter', { min: '0', max: '1', value: String(r.service_level ?? 0) }), ' ', fmtPct(r.service_level)),
      el('td', { class: 'num' }, r.asa_secs == null ? '—' : r.asa_secs.toFixed(1)), el('td', { class: 'num' }, String(r.queued)),
      el('td', { class: 'num' }, fmtPct(r.abandonment_rate)))));
    const row = (r, key) => el('tr', {}, el('th', { scope: 'row' }, key), ...[r.calls, r.self_service, r.queued, r.answered, r.abandoned].map((n) => el('td', { class: 'num' }, String(n))),
      el('td', { class: 'num' }, fmtPct(r.service_level)), el('td', { class: 'num' }, r.asa_secs == null ? '—' : r.asa_secs.toFixed(1)),
      el('td', { class: 'num' }, fmtPct(r.abandonment_rate)), el('td', { class: 'num' }, fmtPct(r.self_service_rate)),
      ...[r.callback, r.callbacks_reached, r.callbacks_unreachable].map((n) => el('td', { class: 'num' }, String(n ?? 0))));
    $('#kpi-table tbody').replaceChildren(...table.rows.map((r) => row(r, r.key)), row(table.total, t('kpi.total')));
    const byHour = new Map(hours.rows.map((r) => [r.key, r.calls]));
    const hourLabels = Array.from({ length: 24 }, (_, h) => String(h).padStart(2, '0'));
    if (hours.rows.length) barChart($('#chart-hours'), hourLabels, hourLabels.map((h) => byHour.get(h) ?? 0), t('chart.per_hour'));
    else empty($('#chart-hours'));
    const labels = days.rows.map((r) => r.key);
    lineChart($('#chart-sl'), labels, [
      { name: t('chart.sl_line'), values: days.rows.map((r) => r.service_level) },
      { name: t('chart.abandon_line'), values: days.rows.map((r) => r.abandonment_rate) },
    ], SHARE_AXIS, SHARE_AXIS.label, t('chart.sl'));
    const maxWait = Math.max(1, ...days.rows.map((r) => r.max_wait_secs), ...days.rows.map((r) => r.asa_secs ?? 0));
    lineChart($('#chart-waits'), labels, [
      { name: t('chart.asa'), values: days.rows.map((r) => r.asa_secs) },
      { name: t('chart.max'), values: days.rows.map((r) => (r.queued ? r.max_wait_secs : null)) },
    ], niceAxis(maxWait), (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1)), t('chart.waits'));
  } catch (e) {
    $('#kpi-error').textContent = t('error', { msg: e.message });
  }
}

// ---------------------------------------------------------------- start

function start(s) {
  if (s.user.must_change_password) {
    // The server refuses everything else until then; the console page has the form.
    $('#signin').hidden = false;
    $('#signin-error').textContent = t('signin.choose_password');
    return;
  }
  me = s.user;
  $('#signin').hidden = true;
  $('#signout').hidden = false;
  $('#who').textContent = `${me.name} (${me.role})`;
  const supervisor = me.role === 'supervisor' || me.role === 'admin';
  $('#tabs').hidden = false;
  for (const b of document.querySelectorAll('#tabs button')) {
    if (b.dataset.tab !== 'log' && !supervisor) b.hidden = true;
  }
  const wanted = location.hash.slice(1);
  const tab = supervisor ? (['wallboard', 'log', 'kpis'].includes(wanted) ? wanted : 'wallboard') : 'log';
  if (supervisor) connectWallboard();
  showTab(tab);
}

document.addEventListener('DOMContentLoaded', async () => {
  applyTexts();
  $('#lang').addEventListener('click', () => {
    lang = lang === 'it' ? 'en' : 'it';
    localStorage.setItem('helpline.lang', lang);
    applyTexts();
    renderBoard();
    if (!$('#log').hidden) loadLog(true);
    if (!$('#kpis').hidden) loadKpis();
  });
  $('#signin-form').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', signOut);
  for (const b of document.querySelectorAll('#tabs button')) b.addEventListener('click', () => showTab(b.dataset.tab));
  $('#log-filter').addEventListener('submit', (e) => { e.preventDefault(); $('#call').hidden = true; loadLog(true); });
  $('#log-more').addEventListener('click', () => loadLog(false));
  $('#call-close').addEventListener('click', () => { $('#call').hidden = true; });
  $('#kpi-filter').addEventListener('submit', (e) => { e.preventDefault(); loadKpis(); });
  setInterval(renderBoard, 1000); // the longest wait ticks between snapshots
  const s = await session();
  if (s) start(s); else $('#signin').hidden = false;
});
