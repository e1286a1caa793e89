// Intercultural mediators on a live call (docs/operators.md, "Adding a mediator"): the operator's
// "Aggiungi mediatore" / "Add mediator" (Alt+M) lists the available mediators who speak the
// caller's language and invites one; the mediator's console shows the request with its screen-pop
// ("Partecipa come mediatore" / "Join as mediator"); once they join, the three talk, and the
// operator may leave the call to the mediator. The warm transfer is the same with a colleague:
// "Consulta un collega" / "Consult a colleague" (Alt+K) puts the caller on hold and asks them; once
// they join, the operator hands the call over or goes back to the caller. The server's side is
// console/src/operators/mediation.rs; its messages are `mediation_offer` and `mediation`.
// An outside interpreter dialled from the picker ("dial a number") can be hung up with
// "Chiudi interprete" / "Hang up interpreter" (console/src/operators/interpreter.rs; its
// message is `interpreter`). The blind hand-over, "Passa alla coda" / "Hand over to queue" (Alt+Q), sends the caller to the
// queue of another language or area, in the place they had, and the operator leaves
// (console/src/operators/handover.rs).

import { t, label } from './i18n.js';

const $ = (id) => document.getElementById(id);

const M = {
  /** Calls I joined as a mediator (or was consulted on) and do not hold. */
  guestOf: new Set(),
  /** Mediators on the calls I hold: call_id → name. */
  joined: new Map(),
  /** Colleagues consulted on the calls I hold, once they joined: call_id → name. */
  consulted: new Map(),
  /** Outside interpreters dialled into the calls I hold: call_id → `dialling` | `joined`. */
  interpreters: new Map(),
  /** What the picker lists: `mediator` or `consult`. */
  picking: 'mediator',
  /** The open request to me: `{call_id, operator, language, pop}`. */
  offer: null,
};

let hooks = {
  api: async () => ({ ok: false }),
  announce: () => {},
  alertBox: () => {},
  /** The live call on screen (not ended), or null. */
  callId: () => null,
  /** My user name. */
  me: () => null,
  popNodes: () => [],
  /** The page's phone: whether the caller is on hold, and the hold key. */
  held: () => false,
  toggleHold: () => {},
  /** The queues a caller may be handed over to: `{languages, areas}`. */
  queues: () => ({ languages: [], areas: [] }),
};

export function init(h) {
  hooks = { ...hooks, ...h };
  $('mediator-add').addEventListener('click', () => openPicker('mediator'));
  $('consult-add').addEventListener('click', () => openPicker('consult'));
  $('call-transfer').addEventListener('click', leave);
  $('call-return').addEventListener('click', backToCaller);
  $('handover-add').addEventListener('click', openHandOver);
  $('handover-go').addEventListener('click', handOver);
  $('handover-cancel').addEventListener('click', () => {
    $('handover-picker').hidden = true;
    $('handover-add').focus();
  });
  $('handover-picker').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      $('handover-picker').hidden = true;
      $('handover-add').focus();
    }
  });
  $('mediator-cancel').addEventListener('click', closePicker);
  $('interpreter-form').addEventListener('submit', (e) => {
    e.preventDefault();
    dialInterpreter();
  });
  $('call-leave').addEventListener('click', leave);
  $('interpreter-hangup').addEventListener('click', hangUpInterpreter);
  $('mediation-join').addEventListener('click', join);
  $('mediation-decline').addEventListener('click', decline);
  $('mediator-picker').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault();
      closePicker();
      $('mediator-add').focus();
    }
  });
  document.addEventListener('keydown', (e) => {
    if (!e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.code === 'KeyQ' && !$('handover-add').hidden) {
      e.preventDefault();
      openHandOver();
      return;
    }
    const kind = { KeyM: 'mediator', KeyK: 'consult' }[e.code];
    if (kind && !$(kind === 'mediator' ? 'mediator-add' : 'consult-add').hidden) {
      e.preventDefault();
      openPicker(kind);
    }
  });
}

/** Whether I am on the call as a mediator or a consulted colleague (not its operator). */
export function isGuest(call) {
  return M.guestOf.has(call);
}

/** Shows what fits the call on screen (called with the page's own rendering). */
export function render() {
  const call = hooks.callId();
  const guest = Boolean(call && M.guestOf.has(call));
  $('mediator-add').hidden = !call || guest;
  $('consult-add').hidden = !call || guest || M.consulted.has(call);
  $('call-leave').hidden = !call || guest || !M.joined.has(call);
  $('interpreter-hangup').hidden = !call || guest || !M.interpreters.has(call);
  $('call-transfer').hidden = !call || guest || !M.consulted.has(call);
  $('call-return').hidden = !call || guest || !M.consulted.has(call);
  // Only the call's own operator, with nobody else on it.
  $('handover-add').hidden = !call || guest || M.consulted.has(call) || M.joined.has(call);
  if (!call || guest) $('mediator-picker').hidden = true;
  if ($('handover-add').hidden) $('handover-picker').hidden = true;
  $('mediation-offer').hidden = !M.offer;
}

async function openPicker(kind = 'mediator') {
  const call = hooks.callId();
  if (!call) return;
  M.picking = kind;
  const picker = $('mediator-picker');
  picker.hidden = false;
  $('mediator-picker-title').textContent = t(kind === 'consult' ? 'consult.pick' : 'mediation.pick');
  $('mediator-status').textContent = t('mediation.loading');
  $('mediator-list').replaceChildren();
  // An outside interpreter's number, dialled through the trunk (a 503 says when there is none).
  $('interpreter-form').hidden = kind !== 'mediator';
  $('interpreter-number').value = '';
  const what = kind === 'consult' ? 'colleagues' : 'mediators';
  const r = await hooks.api('GET', `/api/calls/${encodeURIComponent(call)}/${what}`);
  if (!r.ok) {
    $('mediator-status').textContent = t('error.generic', { message: r.data?.message ?? r.status });
    return;
  }
  const mediators = r.data?.[what] ?? [];
  $('mediator-status').textContent = mediators.length ? '' : t(kind === 'consult' ? 'consult.none' : 'mediation.none');
  const items = mediators.map((m) => {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = 'btn-secondary';
    button.textContent = t('mediation.invite', { name: m.name });
    const langs = document.createElement('span');
    langs.className = 'mediator-languages';
    langs.textContent = ` (${(m.languages ?? []).map((l) => label('language', l)).join(', ')})`;
    button.addEventListener('click', () => invite(call, m.name, kind));
    const li = document.createElement('li');
    li.append(button, langs);
    return li;
  });
  $('mediator-list').replaceChildren(...items);
  const first = $('mediator-list').querySelector('button');
  (first ?? $('mediator-cancel')).focus();
}

/** "Passa alla coda": the queues, the caller's language and area first. */
function openHandOver() {
  const call = hooks.callId();
  if (!call) return;
  const { languages, areas } = hooks.queues();
  const option = (value, text) => {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    return o;
  };
  $('handover-language').replaceChildren(...languages.map((l) => option(l, label('language', l))));
  $('handover-area').replaceChildren(option('', t('handover.any_area')), ...areas.map((a) => option(a, label('area', a))));
  $('handover-status').textContent = '';
  $('mediator-picker').hidden = true;
  $('handover-picker').hidden = false;
  $('handover-language').focus();
}

async function handOver() {
  const call = hooks.callId();
  if (!call) return;
  const language = $('handover-language').value;
  const area = $('handover-area').value || null;
  if (!language) return;
  const r = await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/handover`, { language, area });
  if (!r.ok) {
    $('handover-status').textContent = t('error.generic', { message: r.data?.message ?? r.status });
    return;
  }
  $('handover-picker').hidden = true;
  const queue = area ? `${label('language', language)} / ${label('area', area)}` : label('language', language);
  hooks.announce(t('handover.done', { queue }), true);
}

/** "Dial a number": an outside interpreter through the trunk; they join when they answer. */
async function dialInterpreter() {
  const call = hooks.callId();
  const number = $('interpreter-number').value.replace(/[\s.-]/g, '');
  if (!call || !number) return;
  const r = await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/interpreter`, { number });
  if (!r.ok) {
    $('mediator-status').textContent = t('error.generic', { message: r.data?.message ?? r.status });
    return;
  }
  $('interpreter-number').value = '';
  $('mediator-status').textContent = t('interpreter.dialling', { number });
  hooks.announce(t('interpreter.dialling', { number }));
}

/** "Chiudi interprete": the interpreter's call is hung up (CANCEL while it rings, BYE after). */
async function hangUpInterpreter() {
  const call = hooks.callId();
  if (!call) return;
  const r = await hooks.api('DELETE', `/api/calls/${encodeURIComponent(call)}/interpreter`);
  if (!r.ok) {
    // 409: already gone (the `left` news is on its way).
    if (r.status === 409) M.interpreters.delete(call);
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    render();
  }
}

/** `interpreter`: an outside interpreter on my call is dialled, joined or left (`why`). */
export function interpreterNews(m) {
  const hangUp = $('interpreter-hangup');
  const hadFocus = document.activeElement === hangUp;
  if (m.state === 'left') {
    M.interpreters.delete(m.call_id);
    const known = ['ended', 'hung_up'].includes(m.why);
    hooks.announce(t(known ? `interpreter.state.${m.why}` : 'interpreter.state.failed', { why: m.why ?? '' }), true);
  } else {
    M.interpreters.set(m.call_id, m.state);
    if (m.state === 'joined') {
      closePicker();
      hooks.announce(t('interpreter.state.joined'), true);
    }
  }
  render();
  // The button gone from under the keyboard: back to the call's own controls.
  if (hadFocus && hangUp.hidden) $('mediator-add').focus();
}

function closePicker() {
  $('mediator-picker').hidden = true;
}

async function invite(call, name, kind) {
  const r = kind === 'consult'
    ? await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/consult`, { operator: name })
    : await hooks.api('POST', `/api/calls/${encodeURIComponent(call)}/mediator`, { mediator: name });
  if (!r.ok) {
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    return;
  }
  // A consultation: the caller waits on hold meanwhile.
  if (kind === 'consult' && !hooks.held()) hooks.toggleHold();
  $('mediator-list').replaceChildren();
  $('mediator-status').textContent = t('mediation.invited', { name });
  hooks.announce(t('mediation.invited', { name }));
}

async function leave() {
  const call = hooks.callId();
  if (!call) return;
  const r = await hooks.api('DELETE', `/api/calls/${encodeURIComponent(call)}/mediation`);
  if (!r.ok) hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
}

/** The consultation is over: the colleague leaves, the caller comes off hold. */
async function backToCaller() {
  const call = hooks.callId();
  if (!call) return;
  const r = await hooks.api('DELETE', `/api/calls/${encodeURIComponent(call)}/consult`);
  if (!r.ok) {
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
    return;
  }
  M.consulted.delete(call);
  if (hooks.held()) hooks.toggleHold();
  render();
}

async function join() {
  const offer = M.offer;
  if (!offer) return;
  M.guestOf.add(offer.call_id);
  const r = await hooks.api('POST', `/api/calls/${encodeURIComponent(offer.call_id)}/mediation`);
  if (!r.ok) {
    M.guestOf.delete(offer.call_id);
    hooks.alertBox(t('error.generic', { message: r.data?.message ?? r.status }));
  }
  M.offer = null;
  render();
}

async function decline() {
  const offer = M.offer;
  if (!offer) return;
  M.offer = null;
  render();
  await hooks.api('DELETE', `/api/calls/${encodeURIComponent(offer.call_id)}/mediation`);
}

/** `mediation_offer`: an operator asks me to join their call. */
export function offered(m) {
  M.offer = m;
  const kind = m.kind === 'consult' ? 'consult' : 'mediation';
  $('mediation-offer-title').textContent = t(`${kind}.offer.title`);
  $('mediation-join').textContent = t(`${kind}.join`);
  $('mediation-offer-from').textContent = t(`${kind}.offer.from`, {
    operator: m.operator, language: label('language', m.language),
  });
  $('mediation-offer-pop').replaceChildren(...hooks.popNodes(m.pop ?? {}, true));
  render();
  hooks.announce(`${t('mediation.offer.title')}: ${$('mediation-offer-from').textContent}`, true);
  $('mediation-join').focus();
}

/** `mediation`: news of a mediation on my call, or of mine. */
export function news(m) {
  const mine = m.mediator === hooks.me();
  const kind = m.kind === 'consult' ? 'consult' : 'mediation';
  const others = kind === 'consult' ? M.consulted : M.joined;
  if (m.state === 'joined' && !mine) {
    others.set(m.call_id, m.mediator);
    closePicker();
  }
  if (['left', 'declined'].includes(m.state)) {
    others.delete(m.call_id);
    if (mine) M.guestOf.delete(m.call_id);
    if (mine && M.offer?.call_id === m.call_id) M.offer = null;
  }
  if (m.state === 'holds') {
    others.delete(m.call_id);
    M.guestOf.delete(m.call_id);
  }
  if (m.state !== 'invited' && !(mine && ['left', 'declined'].includes(m.state))) {
    hooks.announce(t(`${kind}.state.${m.state}`, { mediator: m.mediator, operator: m.operator }), true);
  }
  render();
}
