// voipbridge board: draws what GET /v1/board/stream (Server-Sent Events) or,
// failing that, GET /v1/board (polled) sends. Plain DOM, no library. Rows are
// kept by key and only changed text is written; a call keeps its row for as
// long as it is on the board, and a freed row waits, blank, for the next
// call, so nothing on screen moves as calls come and go.
'use strict';
(() => {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };
  const setText = (e, v) => { if (e.textContent !== v) e.textContent = v; };
  const setAttr = (e, k, v) => { if (e.getAttribute(k) !== v) e.setAttribute(k, v); };

  let skew = 0; // server clock minus ours, ms
  let admin = false;
  const now = () => Date.now() + skew;
  const last = { calls: null, events: null, health: null };

  // ---- formatting
  const pad = (n) => String(n).padStart(2, '0');
  const duration = (ms) => {
    const s = Math.max(0, Math.floor(ms / 1000));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
    return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  };
  const clock = (ms) => {
    const d = new Date(ms - skew);
    return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  };
  const ago = (ms) => {
    const s = Math.max(0, Math.round((now() - ms) / 1000));
    if (s < 60) return `${s} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min ago`;
  };
  const fmtMs = (v) => (v >= 1000 ? `${(v / 1000).toFixed(v >= 10000 ? 0 : 1)} s` : `${Math.round(v)} ms`);
  const bytes = (n) => {
    const u = ['B', 'kB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
    return `${n.toFixed(n < 10 && i ? 1 : 0)} ${u[i]}`;
  };
  const dirMark = { inbound: ['↓', 'inbound'], outbound: ['↑', 'outbound'], internal: ['↔', 'internal'] };
  const why = {
    queued: 'in line', sending: 'sending', quota: 'waiting for quota', retrying: 'retrying',
    breaker: 'breaker open', rate_limited: 'rate-limited (429)', auth: 'paused: key refused', replayed: 'replayed',
  };

  // ---- calls: one row object per slot, in table order
  const slots = [];
  const byKey = new Map();
  const tbody = $('calls-body');

  function newSlot() {
    const tr = el('tr');
    const cell = (cls) => tr.appendChild(el('td', cls));
    const caller = cell(), did = cell(), state = cell(), agent = cell(), dur = cell('num dur'), tr_ = cell('num'), src = cell();
    const s = {
      tr, key: null, c: null,
      dir: caller.appendChild(el('span', 'dir')),
      caller: caller.appendChild(el('span', '')),
      e164: caller.appendChild(el('span', 'small')),
      did: did.appendChild(el('span', 'main')),
      didE: did.appendChild(el('span', 'small')),
      state: state.appendChild(el('span', 'state')),
      agent: agent.appendChild(el('span', 'main')),
      exts: agent.appendChild(el('span', 'small')),
      dur, transfers: tr_, src,
    };
    tbody.appendChild(tr);
    slots.push(s);
    return s;
  }

  function free(s) {
    byKey.delete(s.key);
    s.key = null;
    s.c = null;
    s.tr.className = 'free';
    s.tr.setAttribute('aria-hidden', 'true');
    s.tr.removeAttribute('data-call');
    for (const k of ['dir', 'caller', 'e164', 'did', 'didE', 'state', 'agent', 'exts', 'dur', 'transfers', 'src']) setText(s[k], '');
    s.state.className = 'state';
  }

  function fillCall(s, c) {
    s.c = c;
    setAttr(s.tr, 'data-call', c.call_id);
    const [mark, dirName] = dirMark[c.direction] || ['', c.direction];
    setText(s.dir, mark);
    setAttr(s.dir, 'title', dirName);
    setText(s.caller, c.caller || '—');
    setText(s.e164, c.e164 && c.e164 !== c.caller ? c.e164 : '');
    setText(s.did, c.did || '—');
    setText(s.didE, c.did_e164 && c.did_e164 !== c.did ? c.did_e164 : '');
    setText(s.state, c.state);
    const sc = `state s-${c.state}`;
    if (s.state.className !== sc) s.state.className = sc;
    setText(s.agent, c.agent ? (c.agent_name ? `${c.agent_name} (${c.agent})` : c.agent) : '—');
    setText(s.exts, c.exts && c.exts.length ? `ext ${c.exts.join(', ')}` : '');
    setText(s.transfers, String(c.transfers));
    setText(s.src, c.source);
    setAttr(s.src, 'title', `call id ${c.call_id}`);
    const rc = c.state === 'ended' ? 'ended' : '';
    if (s.tr.className !== rc) s.tr.className = rc;
    s.tr.removeAttribute('aria-hidden');
    tick(s);
  }

  function tick(s) {
    if (!s.c) return;
    setText(s.dur, duration((s.c.ended || now()) - s.c.started));
  }

  // The stream sends the calls and the events whole when it opens, then
  // the rows that changed (upsert) and the keys of those gone (remove).
  function keyedPart(listName, render, order) {
    const byKey = new Map();
    const list = () => order([...byKey.values()]);
    return {
      full(d) {
        byKey.clear();
        for (const r of d[listName]) byKey.set(r.key, r);
        render(d);
      },
      delta(d) {
        for (const k of d.remove) byKey.delete(k);
        for (const r of d.upsert) byKey.set(r.key, r);
        render({ ...d.meta, [listName]: list() });
      },
    };
  }
  const callsPart = keyedPart('calls', (d) => renderCalls(d), (rows) => rows);
  const eventsPart = keyedPart('events', (d) => renderEvents(d), (rows) => rows.sort((a, b) => b.seq - a.seq));

  function renderCalls(d) {
    last.calls = d;
    const seen = new Set();
    for (const c of d.calls) seen.add(c.key);
    for (const s of slots) if (s.key !== null && !seen.has(s.key)) free(s);
    for (const c of d.calls) {
      let s = byKey.get(c.key);
      if (!s) {
        s = slots.find((x) => x.key === null) || newSlot();
        s.key = c.key;
        byKey.set(c.key, s);
      }
      fillCall(s, c);
    }
    while (slots.length && slots[slots.length - 1].key === null) slots.pop().tr.remove();
    $('calls-empty').hidden = d.calls.length > 0;
    setText($('calls-count'), String(d.total));
    setText($('calls-more'), d.hidden > 0
      ? `and ${d.hidden} more call${d.hidden === 1 ? '' : 's'} not shown (the board lists the ${d.max_calls} longest-running)`
      : '\u00a0');
    const bs = d.by_state || {};
    const parts = [`${d.total} call${d.total === 1 ? '' : 's'}`];
    for (const k of ['ringing', 'answered', 'ending']) if (bs[k]) parts.push(`${bs[k]} ${k}`);
    summary.calls = parts.join(' · ');
    drawSummary();
    document.title = `(${d.total}) voipbridge · live calls`;
  }

  // ---- events
  const evRows = new Map();
  function delivery(d, many) {
    const span = el('span', `del d-${d.state}`);
    const lead = many ? `${d.sink}: ` : '';
    let title = `${d.sink}: ${d.state}`;
    if (d.state === 'delivered') {
      // The dispatcher reports the status of failures only: a delivered
      // event was answered 2xx.
      span.append(`${lead}${d.status || '2xx'} · ${fmtMs(d.latency_ms || 0)}`);
      title += ` (${d.status || '2xx'}), request ${fmtMs(d.latency_ms || 0)}, ${fmtMs(d.age_ms || 0)} after journaling`;
      if (d.attempts > 1) title += `, attempt ${d.attempts}`;
    } else if (d.state === 'queued') {
      span.append(`${lead}queued`);
      span.append(el('span', 'why', why[d.reason] || d.reason || ''));
      if (d.attempts) title += `, ${d.attempts} attempt${d.attempts === 1 ? '' : 's'}`;
      if (d.error) title += `: ${d.error}`;
    } else {
      span.append(`${lead}dead-lettered${d.status ? ' ' + d.status : ''}`);
      span.append(el('span', 'why', d.reason || ''));
      title += `: ${d.reason || ''}`;
      if (admin && d.dead_letter) span.append(replayButton(d.dead_letter));
    }
    span.title = title;
    return span;
  }

  function replayButton(id) {
    const b = el('button', '', 'Replay');
    b.type = 'button';
    b.dataset.replay = String(id);
    b.setAttribute('aria-label', `Replay dead letter ${id}`);
    return b;
  }

  function renderEvents(d) {
    last.events = d;
    const body = $('events-body');
    const want = [];
    const keep = new Set();
    for (const e of d.events) {
      keep.add(e.key);
      let r = evRows.get(e.key);
      if (!r) {
        r = { tr: el('tr'), sig: '' };
        evRows.set(e.key, r);
      }
      const sig = JSON.stringify(e) + admin;
      if (r.sig !== sig) {
        r.sig = sig;
        r.tr.dataset.call = e.call_id;
        r.tr.dataset.type = e.type;
        const [mark, dirName] = dirMark[(e.direction || '').toLowerCase()] || ['', ''];
        const cust = el('td');
        cust.append(el('span', 'dir', mark), e.number || '—');
        cust.title = [dirName, e.e164].filter(Boolean).join(' · ');
        const call = el('td', '', e.call_id);
        call.title = `${e.source} call ${e.call_id}`;
        const del = el('td');
        for (const s of e.sinks) del.append(delivery(s, e.sinks.length > 1));
        r.tr.replaceChildren(el('td', '', clock(e.at)), el('td', `ev ev-${e.type}`, e.type), cust, el('td', '', e.ext || '—'), call, del);
      }
      want.push(r.tr);
    }
    for (const [k, r] of evRows) if (!keep.has(k)) { r.tr.remove(); evRows.delete(k); }
    let cur = body.firstElementChild;
    for (const tr of want) {
      if (tr === cur) { cur = cur.nextElementSibling; continue; }
      body.insertBefore(tr, cur);
    }
    $('events-empty').hidden = d.events.length > 0;

    const list = $('dead-list');
    const sig = JSON.stringify(d.dead_letters) + admin;
    if (list.dataset.sig !== sig) {
      const items = d.dead_letters.map((x) => {
        const li = el('li');
        li.append(el('span', '', `#${x.id} ${x.sink === 'robin' ? '' : x.sink + ' · '}${x.type} · ${x.number || '—'} · ext ${x.ext || '—'} · ${clock(x.at)}`));
        const w = el('span', 'why', `${x.status ? x.status + ' ' : ''}${x.reason}`);
        w.title = `call ${x.call_id}: ${x.reason}`;
        li.append(w);
        if (admin) li.append(replayButton(x.id));
        return li;
      });
      const active = document.activeElement;
      const focused = active && list.contains(active) ? active.dataset.replay : null;
      list.dataset.sig = sig;
      list.replaceChildren(...items);
      if (focused) {
        const again = list.querySelector(`button[data-replay="${focused}"]`);
        if (again) again.focus();
      }
    }
    setText($('dead-count'), d.dead_total > d.dead_letters.length
      ? `${d.dead_total} (newest ${d.dead_letters.length} shown)` : String(d.dead_total));
    $('dead-empty').hidden = d.dead_total > 0;
  }

  // ---- health
  const summary = { calls: '', delivery: '' };
  function drawSummary() {
    setText($('summary'), [summary.calls, summary.delivery].filter(Boolean).join(' · ') || '\u00a0');
  }

  function syncList(ul, items) {
    const have = new Map([...ul.children].map((li) => [li.dataset.key, li]));
    let cur = ul.firstElementChild;
    for (const it of items) {
      let li = have.get(it.key);
      if (!li) {
        li = el('li');
        li.dataset.key = it.key;
        li.append(el('span', 'dot'), el('span', 'what'), el('span', 'val'));
      }
      have.delete(it.key);
      const [dot, what, val] = li.children;
      const dc = `dot ${it.dot}`;
      if (dot.className !== dc) dot.className = dc;
      setAttr(dot, 'aria-label', it.dot === 'ok' ? 'ok' : it.dot === 'bad' ? 'problem' : it.dot === 'warn' ? 'warning' : 'idle');
      setAttr(dot, 'role', 'img');
      setText(what, it.what);
      setText(val, it.val);
      setAttr(val, 'title', it.title || it.val);
      if (li !== cur) ul.insertBefore(li, cur); else cur = cur.nextElementSibling;
    }
    for (const li of have.values()) li.remove();
  }

  function renderHealth(d) {
    last.health = d;
    const h = d.health;
    const items = [{ key: 'intake', dot: h.intake ? 'ok' : 'bad', what: 'Intake', val: h.intake ? 'signals are journaled' : 'signals cannot be journaled' }];
    for (const s of h.sources || []) {
      let val, dot;
      const since = s.since ? ` since ${clock(s.since)} (${ago(s.since)})` : '';
      const sig = s.last_signal ? `last signal ${ago(s.last_signal)}` : 'no signal yet';
      if (s.kind === 'webhook') { dot = s.last_signal ? 'ok' : 'idle'; val = `webhook · ${sig}`; }
      else if (s.ok) { dot = 'ok'; val = `${s.kind === 'subscriptions' ? 'subscribed' : 'connected'}${since} · ${sig}`; }
      else { dot = 'bad'; val = `${s.detail || 'down'}${since ? ' ·' + since : ''}`; }
      items.push({ key: 'src-' + s.name, dot, what: s.name, val });
    }
    const j = h.journal || {};
    const jv = [`${j.kind || ''}`, `${j.pending} to deliver`];
    if (j.lag_signals) jv.push(`${j.lag_signals} signals to fold (${j.lag_seconds.toFixed(1)} s)`);
    if (j.disk_total) jv.push(`disk ${bytes(j.disk_free)} free`);
    if (j.tracker && j.tracker !== 'ok') jv.push(`tracker ${j.tracker}`);
    items.push({ key: 'journal', dot: !j.ok ? 'bad' : (j.tracker && j.tracker !== 'ok') ? 'warn' : 'ok', what: 'Journal', val: j.ok ? jv.join(' · ') : (j.detail || 'down') });
    const sinkStates = [];
    for (const s of h.sinks || []) {
      const w = Object.entries(s.waiting || {}).sort((a, b) => b[1] - a[1]);
      const n = w.reduce((a, [, v]) => a + v, 0);
      const wv = n ? `${n} waiting (${w.map(([k, v]) => `${why[k] || k} ${v}`).join(', ')})` : 'nothing waiting';
      const dot = s.state === 'ok' ? 'ok' : (s.breaker === 'open' || s.paused === 'auth') ? 'bad' : 'warn';
      items.push({ key: 'sink-' + s.name, dot, what: s.name, val: `${s.state === 'ok' ? 'delivering' : s.state} · breaker ${s.breaker} · ${wv}` });
      sinkStates.push(s.state === 'ok' ? '' : `${s.name}: ${s.state}`);
    }
    items.push({ key: 'dead', dot: h.dead_letters ? 'bad' : 'ok', what: 'Dead letters', val: h.dead_letters ? `${h.dead_letters} waiting` : 'none' });
    syncList($('health-list'), items);
    summary.delivery = sinkStates.filter(Boolean).join(' · ') || (h.intake ? 'delivery ok' : 'intake down');
    drawSummary();
    renderQuota(h.quota || []);
    renderChart(d.chart || []);
  }

  function renderQuota(ws) {
    const q = $('quota');
    if (q.childElementCount !== ws.length * 3) {
      q.replaceChildren();
      for (const w of ws) {
        const bar = el('div', 'bar');
        bar.setAttribute('role', 'meter');
        bar.setAttribute('aria-valuemin', '0');
        bar.append(el('div', 'used'), el('div', 'res'));
        q.append(el('span', 'lbl', w.window), bar, el('span', 'fig'));
      }
    }
    ws.forEach((w, i) => {
      const bar = q.children[i * 3 + 1], fig = q.children[i * 3 + 2];
      const f = w.limit ? Math.min(w.used / w.limit, 1) : 0;
      const used = bar.children[0];
      used.style.width = `${(f * 100).toFixed(1)}%`;
      used.className = `used${f >= 1 ? ' full' : f >= 0.8 ? ' hot' : ''}`;
      bar.children[1].style.width = `${w.limit ? ((w.reserve / w.limit) * 100).toFixed(1) : 0}%`;
      setAttr(bar, 'aria-valuemax', String(w.limit));
      setAttr(bar, 'aria-valuenow', String(w.used));
      setAttr(bar, 'aria-label', `${w.window} window: ${w.used} of ${w.limit} used, ${w.reserve} kept for presence`);
      setText(fig, `${w.used} / ${w.limit}`);
    });
  }

  const SVG = 'http://www.w3.org/2000/svg';
  const svgEl = (tag, attrs, text) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    return e;
  };
  let chartSig = '';
  function renderChart(raw) {
    const sig = JSON.stringify(raw);
    if (sig === chartSig) return;
    chartSig = sig;
    // Zero figures are left out of the JSON.
    const ms = raw.map((m) => ({ t: m.t, events: m.events || 0, delivered: m.delivered || 0, failed: m.failed || 0, p50: m.p50 || 0, p95: m.p95 || 0 }));
    const svg = $('chart');
    const x0 = 34, x1 = 540, y0 = 8, y1 = 142, n = Math.max(ms.length, 1);
    const bw = (x1 - x0) / n;
    const maxEv = Math.max(1, ...ms.map((m) => m.events));
    const maxLat = Math.max(1, ...ms.map((m) => m.p95));
    const g = svgEl('g', { class: 'bars' });
    ms.forEach((m, i) => {
      if (!m.events) return;
      const h = ((y1 - y0) * m.events) / maxEv;
      const r = svgEl('rect', { x: (x0 + i * bw + 0.5).toFixed(1), y: (y1 - h).toFixed(1), width: (bw - 1).toFixed(1), height: h.toFixed(1) });
      r.append(svgEl('title', {}, `${clock(m.t * 1000).slice(0, 5)}: ${m.events} events, ${m.delivered} delivered${m.failed ? `, ${m.failed} failed attempts` : ''}${m.delivered ? `, p50 ${fmtMs(m.p50)}, p95 ${fmtMs(m.p95)}` : ''}`));
      g.append(r);
    });
    let d = '';
    ms.forEach((m, i) => {
      if (!m.delivered) return;
      const x = (x0 + (i + 0.5) * bw).toFixed(1), y = (y1 - ((y1 - y0) * m.p95) / maxLat).toFixed(1);
      const prev = i > 0 && ms[i - 1].delivered;
      d += `${prev ? 'L' : 'M'}${x} ${y} `;
    });
    const kids = [
      svg.querySelector('title'), svg.querySelector('desc'),
      svgEl('line', { class: 'axis', x1: x0, y1, x2: x1, y2: y1 }),
      g,
      svgEl('path', { class: 'lat', d: d || 'M0 0' }),
      svgEl('text', { x: x0 - 4, y: y0 + 10, 'text-anchor': 'end' }, String(maxEv)),
      svgEl('text', { x: x0 - 4, y: y1, 'text-anchor': 'end' }, '0'),
      svgEl('text', { x: x1 + 4, y: y0 + 10 }, fmtMs(maxLat)),
      svgEl('text', { x: x0, y: 162 }, '−60 min'),
      svgEl('text', { x: (x0 + x1) / 2, y: 162, 'text-anchor': 'middle' }, '−30 min'),
      svgEl('text', { x: x1, y: 162, 'text-anchor': 'end' }, 'now'),
    ];
    svg.replaceChildren(...kids);
    const total = ms.reduce((a, m) => a + m.events, 0);
    const busiest = Math.max(0, ...ms.map((m) => m.events));
    setText($('chart-desc'), total
      ? `Last hour: ${total} events, at most ${busiest} in a minute; delivery p95 at most ${fmtMs(Math.max(0, ...ms.map((m) => m.p95)))}.`
      : 'No events in the last hour.');
  }

  // ---- replay
  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-replay]');
    if (!b) return;
    const id = b.dataset.replay;
    const msg = $('action');
    b.disabled = true;
    setText(b, 'Replaying…');
    try {
      const r = await fetch(`/v1/board/deadletters/${encodeURIComponent(id)}/replay`, {
        method: 'POST', credentials: 'same-origin', headers: { 'X-Board-Request': '1' },
      });
      const body = await r.json().catch(() => ({}));
      if (!r.ok) throw new Error(body.error || `HTTP ${r.status}`);
      msg.className = 'action';
      setText(msg, `Dead letter ${id} queued for delivery again.`);
    } catch (e) {
      msg.className = 'action bad';
      setText(msg, `Replay of ${id} failed: ${e.message}`);
      b.disabled = false;
      setText(b, 'Replay');
    }
  });

  // ---- connection: a stream, else polling
  const conn = $('conn');
  function setConn(cls, text) {
    if (conn.className !== cls) conn.className = cls;
    setText(conn, text);
  }
  function handle(name, d) {
    if (name === 'viewer') {
      skew = d.now - Date.now();
      admin = d.admin;
      return;
    }
    if (name === 'calls') callsPart.full(d);
    else if (name === 'calls-delta') callsPart.delta(d);
    else if (name === 'events') eventsPart.full(d);
    else if (name === 'events-delta') eventsPart.delta(d);
    else if (name === 'health') renderHealth(d);
  }
  let es = null, pollTimer = null;
  function connect() {
    if (!('EventSource' in window)) { startPolling(); return; }
    es = new EventSource('/v1/board/stream');
    // A proxy that buffers the stream lets nothing through: poll instead.
    let heard = false;
    const watchdog = setTimeout(() => {
      if (!heard && es) { es.close(); es = null; startPolling(); }
    }, 10000);
    for (const name of ['viewer', 'calls', 'calls-delta', 'events', 'events-delta', 'health']) {
      es.addEventListener(name, (e) => {
        heard = true;
        clearTimeout(watchdog);
        handle(name, JSON.parse(e.data));
        setConn('live', 'live');
      });
    }
    es.onopen = () => setConn('live', 'live');
    es.onerror = (e) => {
      if (e.target !== es) return; // one the watchdog closed
      if (es.readyState === EventSource.CLOSED) { es = null; startPolling(); }
      else setConn('down', 'reconnecting…');
    };
  }
  function startPolling() {
    if (pollTimer) return;
    const poll = async () => {
      try {
        const r = await fetch('/v1/board', { credentials: 'same-origin', cache: 'no-store' });
        if (r.status === 401 || r.status === 403) { location.reload(); return; }
        if (!r.ok) throw new Error(`HTTP ${r.status}`);
        const d = await r.json();
        for (const name of ['viewer', 'health', 'events', 'calls']) handle(name, d[name]);
        setConn('poll', 'polling every 5 s');
      } catch (e) {
        setConn('down', 'bridge unreachable; trying again');
      }
    };
    poll();
    pollTimer = setInterval(poll, 5000);
    // Try the stream again now and then (it may have been full, or down).
    setTimeout(() => { clearInterval(pollTimer); pollTimer = null; connect(); }, 60000);
  }

  setInterval(() => {
    for (const s of slots) tick(s);
    if (last.health) renderHealth(last.health);
  }, 1000);
  connect();
})();
