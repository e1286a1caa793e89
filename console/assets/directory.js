// The directory's editors' page (`/directory`): organisation editors change their organisation's
// services (their changes wait for review), editors change any service, review the proposals,
// resolve the operators' flags, confirm a service unchanged and restore an earlier version.
// It speaks the API of `console/src/directory/review.rs`; values from the server reach the DOM
// as text only. Italian by default, English on request (kept in localStorage, as the console).

const TEXTS = {
  it: {
    'app.title': 'Helpline — servizi', 'app.name': 'Helpline — servizi', 'lang.switch': 'English', 'signout': 'Esci',
    'signin.title': 'Accesso', 'signin.name': 'Nome utente', 'signin.password': 'Password', 'signin.submit': 'Accedi',
    'signin.bad': 'Nome utente o password errati.', 'signin.not_editor': 'Questa pagina è per i redattori dell’elenco dei servizi.',
    'role.editor': 'redattore', 'role.org_editor': 'redattore dell’ente', 'role.admin': 'amministratore',
    'list.search': 'Cerca', 'list.mine': 'Solo i servizi del mio ente', 'list.unconfirmed': 'Non confermati da 12 mesi', 'list.flagged': 'Con segnalazioni',
    'list.none': 'Nessun servizio.', 'list.flags': '{n} segnalazioni', 'list.proposals': '{n} proposte',
    'review.title': 'Da rivedere', 'review.none': 'Nessuna proposta in attesa.', 'review.accept': 'Accetta', 'review.reject': 'Rifiuta',
    'flags.title': 'Segnalazioni', 'flags.none': 'Nessuna segnalazione aperta.', 'flags.resolve': 'Risolta',
    'flag.phone_wrong': 'Telefono sbagliato', 'flag.closed': 'Chiuso', 'flag.moved': 'Trasferito altrove', 'flag.hours_wrong': 'Orari sbagliati', 'flag.other': 'Altro',
    'service.readonly': 'Puoi leggere questo servizio, non modificarlo.',
    'service.meta': 'Modificato: {modified} · Confermato: {assured}', 'never': 'mai',
    'section.service': 'Servizio', 'section.location': 'Sede {n}', 'section.address': 'Indirizzo', 'section.phone': 'Telefono {n}', 'section.schedule': 'Orario {n}',
    'add.phone': 'Aggiungi un telefono', 'add.schedule': 'Aggiungi un orario', 'remove': 'Togli',
    'edit.reason': 'Motivo della modifica', 'edit.save': 'Salva', 'edit.confirm': 'Confermato senza modifiche',
    'edit.applied': 'Modifica applicata.', 'edit.proposed': 'Proposta inviata: un redattore la rivedrà.', 'edit.invalid': 'Correggi i campi segnalati.',
    'edit.confirmed': 'Servizio confermato.',
    'history.title': 'Versioni', 'history.restore': 'Ripristina la versione precedente', 'history.restored': 'Versione ripristinata.',
    'kind.edit': 'modifica', 'kind.restore': 'ripristino', 'kind.confirm': 'conferma', 'kind.import': 'importazione', 'kind.export': 'esportazione',
    'status.proposed': 'proposta', 'status.applied': 'applicata', 'status.rejected': 'rifiutata',
    'entry': '{kind} ({status}) di {who}, {at}', 'error': 'Errore: {msg}',
  },
  en: {
    'app.title': 'Helpline — services', 'app.name': 'Helpline — services', 'lang.switch': 'Italiano', 'signout': 'Sign out',
    'signin.title': 'Sign in', 'signin.name': 'User name', 'signin.password': 'Password', 'signin.submit': 'Sign in',
    'signin.bad': 'Wrong user name or password.', 'signin.not_editor': 'This page is for the directory’s editors.',
    'role.editor': 'editor', 'role.org_editor': 'organisation editor', 'role.admin': 'admin',
    'list.search': 'Search', 'list.mine': 'Only my organisation’s services', 'list.unconfirmed': 'Not confirmed for 12 months', 'list.flagged': 'Reported',
    'list.none': 'No services.', 'list.flags': '{n} reports', 'list.proposals': '{n} proposals',
    'review.title': 'To review', 'review.none': 'No proposals waiting.', 'review.accept': 'Accept', 'review.reject': 'Reject',
    'flags.title': 'Reports', 'flags.none': 'No open reports.', 'flags.resolve': 'Resolved',
    'flag.phone_wrong': 'Phone wrong', 'flag.closed': 'Closed', 'flag.moved': 'Moved', 'flag.hours_wrong': 'Hours wrong', 'flag.other': 'Other',
    'service.readonly': 'You may read this service, not change it.',
    'service.meta': 'Modified: {modified} · Confirmed: {assured}', 'never': 'never',
    'section.service': 'Service', 'section.location': 'Location {n}', 'section.address': 'Address', 'section.phone': 'Phone {n}', 'section.schedule': 'Hours {n}',
    'add.phone': 'Add a phone', 'add.schedule': 'Add hours', 'remove': 'Remove',
    'edit.reason': 'Why', 'edit.save': 'Save', 'edit.confirm': 'Confirmed unchanged',
    'edit.applied': 'Change applied.', 'edit.proposed': 'Proposal sent: an editor will review it.', 'edit.invalid': 'Please correct the fields shown.',
    'edit.confirmed': 'Service confirmed.',
    'history.title': 'Versions', 'history.restore': 'Restore the version before', 'history.restored': 'Version restored.',
    'kind.edit': 'edit', 'kind.restore': 'restore', 'kind.confirm': 'confirmation', 'kind.import': 'import', 'kind.export': 'export',
    'status.proposed': 'proposed', 'status.applied': 'applied', 'status.rejected': 'rejected',
    'entry': '{kind} ({status}) by {who}, {at}', 'error': 'Error: {msg}',
  },
};

let lang = localStorage.getItem('helpline.lang') === 'en' ? 'en' : 'it';

function t(key, args = {}) {
  const s = TEXTS[lang][key] ?? TEXTS.it[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (args[k] ?? ''));
}

function applyTexts(root = document) {
  document.documentElement.lang = lang;
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  document.title = t('app.title');
}

const $ = (sel) => document.querySelector(sel);
const fmtTime = (iso) => (iso ? new Date(iso).toLocaleString(lang === 'it' ? 'it-IT' : 'en-GB', { timeZone: 'Europe/Rome' }) : '');

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'value') e.value = v;
    else if (k === 'readOnly') e.readOnly = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// ---------------------------------------------------------------- session and API

const S = { me: null, csrf: null, current: null, inputs: [] };

async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && S.csrf) headers['x-csrf-token'] = S.csrf;
  const r = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await r.json(); } catch { data = null; }
  return { ok: r.ok, status: r.status, data };
}

const isEditor = () => ['editor', 'admin'].includes(S.me?.role);

async function signIn(ev) {
  ev.preventDefault();
  const form = new FormData(ev.target);
  const r = await api('POST', '/api/session', { name: form.get('name'), password: form.get('password') });
  if (!r.ok) { $('#signin-error').textContent = t('signin.bad'); return; }
  start(r.data);
}

async function signOut() {
  await api('DELETE', '/api/session');
  location.reload();
}

function start(session) {
  S.me = session.user;
  S.csrf = session.csrf_token;
  if (!['editor', 'org_editor', 'admin'].includes(S.me.role)) {
    $('#signin').hidden = false;
    $('#signin-error').textContent = t('signin.not_editor');
    return;
  }
  $('#signin').hidden = true;
  $('#work').hidden = false;
  $('#signout').hidden = false;
  $('#who').textContent = `${S.me.name} (${t(`role.${S.me.role}`)})`;
  $('#review').hidden = false;
  $('#mine-label').hidden = S.me.role !== 'org_editor';
  loadList();
  loadReview();
}

// ---------------------------------------------------------------- the list

async function loadList() {
  const p = new URLSearchParams();
  if ($('#q').value.trim()) p.set('q', $('#q').value.trim());
  if ($('#unconfirmed').checked) p.set('unconfirmed_months', '12');
  if ($('#flagged').checked) p.set('flagged', 'true');
  if ($('#mine').checked) p.set('mine', 'true');
  const r = await api('GET', `/api/directory/services?${p}`);
  const list = r.ok && Array.isArray(r.data) ? r.data : [];
  $('#services').replaceChildren(...(list.length ? list.map(serviceItem) : [el('li', { class: 'muted', text: t('list.none') })]));
}

function serviceItem(s) {
  return el('li', { 'data-id': s.id },
    el('button', { type: 'button', class: 'open', text: s.name, onclick: () => openService(s.id) }),
    s.open_flags > 0 ? el('span', { class: 'badge flag', text: t('list.flags', { n: s.open_flags }) }) : null,
    s.proposals > 0 ? el('span', { class: 'badge', text: t('list.proposals', { n: s.proposals }) }) : null,
    el('div', { class: 'muted', text: s.organization }),
  );
}

// ---------------------------------------------------------------- review: proposals and flags

async function loadReview() {
  const [changes, flags] = await Promise.all([api('GET', '/api/directory/changes?status=proposed'), api('GET', '/api/directory/flags')]);
  const proposals = changes.ok ? changes.data : [];
  $('#proposals-empty').hidden = proposals.length > 0;
  $('#proposals').replaceChildren(...proposals.map((c) => el('li', { 'data-change': String(c.id) },
    el('button', { type: 'button', class: 'open', text: c.record?.service?.name ?? c.service_id, onclick: () => openService(c.service_id) }),
    el('div', { class: 'muted', text: t('entry', { kind: t(`kind.${c.kind}`), status: t(`status.${c.status}`), who: c.proposed_by, at: fmtTime(c.proposed_at) }) }),
    c.reason ? el('div', { text: c.reason }) : null,
    diffList(c.diff),
    isEditor() ? el('button', { type: 'button', class: 'accept', text: t('review.accept'), onclick: () => review(c, 'accept') }) : null,
    isEditor() ? el('button', { type: 'button', class: 'reject', text: t('review.reject'), onclick: () => review(c, 'reject') }) : null,
  )));
  const open = flags.ok ? flags.data : [];
  $('#flags-empty').hidden = open.length > 0;
  $('#flags').replaceChildren(...open.map(flagItem));
}

function flagItem(f) {
  return el('li', { 'data-flag': String(f.id) },
    el('button', { type: 'button', class: 'open', text: f.service_name ?? f.service_id, onclick: () => openService(f.service_id) }),
    el('span', { class: 'badge flag', text: t(`flag.${f.reason}`) }),
    f.note ? el('div', { text: f.note }) : null,
    el('div', { class: 'muted', text: `${f.flagged_by}, ${fmtTime(f.flagged_at)}` }),
    isEditor() ? el('button', { type: 'button', class: 'resolve', text: t('flags.resolve'), onclick: () => resolveFlag(f) }) : null,
  );
}

async function review(change, action) {
  const r = await api('POST', `/api/directory/changes/${change.id}/${action}`, action === 'reject' ? { reason: '' } : undefined);
  if (!r.ok) alert(t('error', { msg: r.data?.message ?? r.status }));
  await refreshAll(change.service_id);
}

async function resolveFlag(f) {
  const r = await api('POST', `/api/directory/flags/${f.id}/resolve`);
  if (!r.ok) alert(t('error', { msg: r.data?.message ?? r.status }));
  await refreshAll(f.service_id);
}

async function refreshAll(serviceId) {
  await Promise.all([loadReview(), loadList()]);
  if (S.current && S.current.meta.id === serviceId) await openService(serviceId);
}

function diffList(diff) {
  if (!Array.isArray(diff) || diff.length === 0) return null;
  return el('ul', { class: 'diff' }, ...diff.map((d) => el('li', {},
    `${d.field}: `, el('del', { text: d.before ?? '—' }), ' → ', el('ins', { text: d.after ?? '—' }))));
}

// ---------------------------------------------------------------- one service

const FIELDS = {
  service: [['name'], ['alternate_name'], ['description', 'textarea'], ['status', ['active', 'inactive', 'defunct', 'temporarily closed']], ['url'], ['email'], ['alert', 'textarea']],
  location: [['name'], ['location_type', ['physical', 'postal', 'virtual']], ['latitude'], ['longitude']],
  address: [['address_1'], ['city'], ['postal_code'], ['state_province'], ['country'], ['address_type', ['physical', 'postal', 'virtual']]],
  phone: [['number'], ['type', ['', 'voice', 'cell', 'fax', 'text', 'sms', 'video', 'pager', 'textphone']], ['extension'], ['description']],
  schedule: [['byday'], ['opens_at'], ['closes_at'], ['timezone'], ['valid_from'], ['valid_to'], ['description']],
};

async function openService(id) {
  const r = await api('GET', `/api/directory/services/${encodeURIComponent(id)}`);
  if (!r.ok) { $('#edit-status').textContent = t('error', { msg: r.data?.message ?? r.status }); return; }
  S.current = r.data;
  $('#service').hidden = false;
  $('#edit-status').textContent = '';
  renderService();
  loadHistory(id);
}

function fieldset(legend, table, obj, path, editable, onRemove) {
  const box = el('fieldset', { 'data-path': path }, el('legend', { text: legend }));
  for (const [key, kind] of FIELDS[table]) {
    const field = `${path}.${key}`;
    const value = obj[key] ?? '';
    let input;
    if (Array.isArray(kind) && editable) {
      input = el('select', { name: field, 'data-field': field }, ...kind.map((o) => el('option', { value: o, text: o })));
      input.value = String(value);
    } else if (kind === 'textarea' && editable) {
      input = el('textarea', { name: field, 'data-field': field, rows: '2', value: String(value) });
    } else {
      input = el('input', { name: field, 'data-field': field, value: String(value), readOnly: !editable });
    }
    if (editable) S.inputs.push({ input, obj, key });
    box.append(el('label', {}, el('span', { text: key }), input));
  }
  if (editable && onRemove) box.append(el('button', { type: 'button', class: 'remove', text: t('remove'), onclick: onRemove }));
  return box;
}

function renderService() {
  const { record, meta, editable } = S.current;
  S.inputs = [];
  $('#service-name').textContent = meta.name;
  $('#service-meta').textContent = t('service.meta', { modified: meta.last_modified ? fmtTime(meta.last_modified) : t('never'), assured: meta.assured_date ?? t('never') });
  $('#service-readonly').hidden = editable;
  $('#service-flags').replaceChildren(...S.current.open_flags.map(flagItem));
  const parts = [fieldset(t('section.service'), 'service', record.service, 'service', editable)];
  record.locations.forEach((l, i) => {
    parts.push(fieldset(t('section.location', { n: i + 1 }), 'location', l, `locations[${i}]`, editable));
    (l.addresses ?? []).forEach((a, j) => parts.push(fieldset(t('section.address'), 'address', a, `locations[${i}].addresses[${j}]`, editable)));
  });
  record.phones.forEach((p, i) => parts.push(fieldset(t('section.phone', { n: i + 1 }), 'phone', p, `phones[${i}]`, editable,
    () => { collect(); record.phones.splice(i, 1); renderService(); })));
  record.schedules.forEach((s, i) => parts.push(fieldset(t('section.schedule', { n: i + 1 }), 'schedule', s, `schedules[${i}]`, editable,
    () => { collect(); record.schedules.splice(i, 1); renderService(); })));
  if (editable) {
    parts.push(el('button', { type: 'button', class: 'add-phone', text: t('add.phone'), onclick: () => { collect(); record.phones.push({ type: 'voice' }); renderService(); } }));
    parts.push(el('button', { type: 'button', class: 'add-schedule', text: t('add.schedule'), onclick: () => { collect(); record.schedules.push({ freq: 'WEEKLY', timezone: 'Europe/Rome' }); renderService(); } }));
  }
  $('#fields').replaceChildren(...parts);
  $('#edit-actions').hidden = !editable;
  $('#confirm').hidden = !(editable && S.current.reviewer);
}

function collect() {
  for (const { input, obj, key } of S.inputs) {
    const v = input.value.trim();
    if (v === '') delete obj[key]; else obj[key] = v;
  }
}

async function save(ev) {
  ev.preventDefault();
  collect();
  for (const e of document.querySelectorAll('.field-error')) e.remove();
  const id = S.current.meta.id;
  const r = await api('PUT', `/api/directory/services/${encodeURIComponent(id)}`, { record: S.current.record, reason: $('#reason').value });
  if (r.status === 422 && Array.isArray(r.data?.fields)) {
    for (const f of r.data.fields) {
      const input = document.querySelector(`[data-field="${CSS.escape(f.field)}"]`);
      const note = el('p', { class: 'field-error', role: 'alert', 'data-error-for': f.field, text: input ? f.reason : `${f.field}: ${f.reason}` });
      if (input) input.after(note); else $('#edit-status').after(note);
    }
    $('#edit-status').textContent = t('edit.invalid');
    return;
  }
  if (!r.ok) { $('#edit-status').textContent = t('error', { msg: r.data?.message ?? r.status }); return; }
  $('#reason').value = '';
  await refreshAll(id);
  $('#edit-status').textContent = r.status === 202 ? t('edit.proposed') : t('edit.applied');
}

async function confirmService() {
  const id = S.current.meta.id;
  const r = await api('POST', `/api/directory/services/${encodeURIComponent(id)}/confirm`);
  await refreshAll(id);
  $('#edit-status').textContent = r.ok ? t('edit.confirmed') : t('error', { msg: r.data?.message ?? r.status });
}

async function loadHistory(id) {
  const r = await api('GET', `/api/directory/services/${encodeURIComponent(id)}/history`);
  const list = r.ok ? r.data : [];
  $('#history').replaceChildren(...list.map((c) => el('li', { 'data-change': String(c.id) },
    el('div', { text: t('entry', { kind: t(`kind.${c.kind}`), status: t(`status.${c.status}`), who: c.reviewed_by ?? c.proposed_by, at: fmtTime(c.applied_at ?? c.reviewed_at ?? c.proposed_at) }) }),
    c.reason ? el('div', { class: 'muted', text: c.reason }) : null,
    diffList(c.diff),
    S.current?.reviewer && c.status === 'applied' && c.previous && c.kind !== 'confirm'
      ? el('button', { type: 'button', class: 'restore', text: t('history.restore'), onclick: () => restore(id, c.id) })
      : null,
  )));
}

async function restore(id, changeId) {
  const r = await api('POST', `/api/directory/services/${encodeURIComponent(id)}/restore`, { change_id: changeId });
  await refreshAll(id);
  $('#edit-status').textContent = r.ok ? t('history.restored') : t('error', { msg: r.data?.message ?? r.status });
}

// ---------------------------------------------------------------- start

document.addEventListener('DOMContentLoaded', async () => {
  applyTexts();
  $('#signin-form').addEventListener('submit', signIn);
  $('#signout').addEventListener('click', signOut);
  $('#lang').addEventListener('click', () => {
    lang = lang === 'it' ? 'en' : 'it';
    localStorage.setItem('helpline.lang', lang);
    applyTexts();
    if (S.me) { $('#who').textContent = `${S.me.name} (${t(`role.${S.me.role}`)})`; loadList(); loadReview(); if (S.current) openService(S.current.meta.id); }
  });
  $('#filters').addEventListener('input', () => loadList());
  $('#filters').addEventListener('submit', (e) => { e.preventDefault(); loadList(); });
  $('#edit').addEventListener('submit', save);
  $('#confirm').addEventListener('click', confirmService);
  const r = await api('GET', '/api/session');
  if (r.ok && r.data?.user) start(r.data);
  else $('#signin').hidden = false;
});
