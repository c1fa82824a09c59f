// streamrpc dashboard: live numbers, sparklines and activity from the edge's
// /events stream; the try-it form; the dead-letter buttons. Every page works
// without this file; it only enhances. Text from the server goes in through
// textContent, never innerHTML.
(function () {
  'use strict';

  // With sign-in on, the page carries its session's anti-CSRF token; the edge
  // refuses a POST or DELETE authenticated by the session cookie without it.
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  function unsafeHeaders(h) {
    h = h || {};
    if (csrfMeta && csrfMeta.content) h['X-CSRF-Token'] = csrfMeta.content;
    return h;
  }

  // --- formats: the same as ui/format.go ---
  function trimZeros(s) { return s.indexOf('.') < 0 ? s : s.replace(/0+$/, '').replace(/\.$/, ''); }
  function fmtRate(r) {
    if (!(r > 0)) return '0';
    if (r < 1) return trimZeros(r.toFixed(2));
    if (r < 10) return trimZeros(r.toFixed(1));
    if (r < 1000) return r.toFixed(0);
    return trimZeros((r / 1000).toFixed(1)) + 'k';
  }
  function fmtPct(x) {
    if (typeof x !== 'number' || isNaN(x)) return '–';
    var v = x * 100;
    if (v >= 100) return '100%';
    if (v >= 99.95) return '99.9%';
    return trimZeros(v.toFixed(1)) + '%';
  }
  function fmtMS(ms) {
    if (!(ms > 0)) return '0ms';
    if (ms < 0.01) return '<0.01ms';
    if (ms < 1) return trimZeros(ms.toFixed(2)) + 'ms';
    if (ms < 10) return trimZeros(ms.toFixed(1)) + 'ms';
    if (ms < 1000) return ms.toFixed(0) + 'ms';
    if (ms < 60000) return trimZeros((ms / 1000).toFixed(1)) + 's';
    var s = Math.floor(ms / 1000);
    return Math.floor(s / 60) + 'm ' + (s % 60) + 's';
  }
  function ago(now, t) {
    var d = (now - t) / 1000;
    if (d < 2) return 'just now';
    if (d < 60) return Math.floor(d) + 's ago';
    if (d < 3600) return Math.floor(d / 60) + 'm ago';
    if (d < 48 * 3600) return Math.floor(d / 3600) + 'h ago';
    return Math.floor(d / 86400) + 'd ago';
  }
  function clock(d) { return d.toISOString().slice(11, 23); }
  function full(d) { return d.toISOString().replace('T', ' ').replace('Z', ' UTC'); }
  function num(f) { return String(Math.round(f * 100) / 100); }
  function outcomeClass(o) {
    if (o === 'ok') return 'ok';
    if (o === 'error' || o === 'dead') return 'err';
    if (o === 'timeout' || o === 'retry' || o === 'cancelled') return 'warn';
    return 'muted';
  }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  // within lists root itself (if it matches) and its descendants matching sel.
  function within(root, sel) { var l = $$(sel, root); if (root.matches(sel)) l.unshift(root); return l; }
  function seg(s) { return encodeURIComponent(s); }

  document.documentElement.classList.add('js');

  // --- relative times ---
  function tickTimes() {
    var now = Date.now();
    $$('time[data-ago]').forEach(function (el) {
      var t = Date.parse(el.getAttribute('datetime') || '');
      el.textContent = isNaN(t) ? 'never' : ago(now, t);
    });
  }
  setInterval(tickTimes, 1000);

  // --- charts: the same arithmetic as ui/charts.go ---
  function sparkPaths(values, w, h, pad) {
    if (!values.length) return { line: '', area: '' };
    var top = 0;
    values.forEach(function (v) { top = Math.max(top, v); });
    var base = h - pad;
    var y = function (v) { return top <= 0 || v <= 0 ? base : base - v / top * (h - 2 * pad); };
    var pts = values.length === 1 ? [values[0], values[0]] : values;
    var step = w / (pts.length - 1);
    var line = pts.map(function (v, i) { return (i ? ' L' : 'M') + num(i * step) + ',' + num(y(v)); }).join('');
    return { line: line, area: line + ' L' + num(w) + ',' + num(base) + ' L0,' + num(base) + ' Z' };
  }
  function bars(values, w, h, gap, minH) {
    var n = values.length, top = 0;
    values.forEach(function (v) { top = Math.max(top, v); });
    var bw = Math.max((w - gap * (n - 1)) / n, 0);
    return values.map(function (v, i) {
      var bh = top > 0 && v > 0 ? Math.max(v / top * h, minH) : 0;
      return { x: i * (bw + gap), y: h - bh, w: bw, h: bh };
    });
  }
  function drawSpark(svg, rate) {
    var vb = svg.viewBox.baseVal;
    var p = sparkPaths(rate.map(function (r) { return r.calls; }), vb.width, vb.height, 2);
    svg.querySelector('.spark-line').setAttribute('d', p.line);
    svg.querySelector('.spark-area').setAttribute('d', p.area);
  }
  function drawRateChart(box, rate) {
    var svg = box.querySelector('svg.chart');
    var rects = $$('rect.bar', svg);
    if (!svg || rects.length !== rate.length) return;
    var w = +svg.dataset.w, h = +svg.dataset.h;
    var values = rate.map(function (r) { return r.calls; });
    var bs = bars(values, w, h, 2, 1.5);
    var top = 0;
    rects.forEach(function (r, i) {
      top = Math.max(top, values[i]);
      r.setAttribute('y', num(bs[i].y));
      r.setAttribute('height', num(bs[i].h));
      var t = r.querySelector('title');
      if (t) t.textContent = new Date(rate[i].start).toISOString().slice(11, 19) + ' · ' + values[i] + ' calls (' + fmtRate(values[i] / 10) + '/s)';
    });
    var max = svg.querySelector('[data-chart-max]');
    if (max) max.textContent = fmtRate(top / 10) + '/s';
    var note = box.parentNode.querySelector('.chart-note');
    if (note) note.hidden = top > 0;
  }

  // --- live stats ---
  function count(v) { return (v || 0).toLocaleString('en-US'); }
  var stat = {
    consumers_online: function (s) { return count(s.consumers_online); },
    calls_per_second: function (s) { return fmtRate(s.calls_per_second); },
    calls: function (s) { return count(s.totals.calls); },
    errors: function (s) { return count(s.totals.errors); },
    retries: function (s) { return count(s.totals.retries); },
    timeouts: function (s) { return count(s.totals.timeouts); },
    success_rate: function (s) { return fmtPct(s.totals.success_rate); },
    avg: function (s) { return fmtMS(s.totals.avg_ms); },
    p50: function (s) { return fmtMS(s.totals.p50_ms); },
    p95: function (s) { return fmtMS(s.totals.p95_ms); },
    p99: function (s) { return fmtMS(s.totals.p99_ms); },
    backlog: function (s) { return count(s.backlog); },
    pending: function (s) { return count(s.pending); },
    delayed: function (s) { return count(s.delayed); },
    dead_letters: function (s) { return count(s.dead_letters); },
    // The windowed numbers: only from stats of the page's window (the
    // stats events carry the edge's default window).
    w_calls: function (s) { return win(s, function (w) { return count(w.calls); }); },
    w_errors: function (s) { return win(s, function (w) { return count(w.errors); }); },
    w_rate: function (s) { return win(s, function (w) { return fmtRate(w.calls_per_second); }); },
    w_success_rate: function (s) { return win(s, function (w) { return fmtPct(w.success_rate); }); },
    w_p50: function (s) { return win(s, function (w) { return fmtMS(w.p50_ms); }); },
    w_p95: function (s) { return win(s, function (w) { return fmtMS(w.p95_ms); }); },
    w_p99: function (s) { return win(s, function (w) { return fmtMS(w.p99_ms); }); }
  };
  function win(s, f) {
    var w = s.window;
    return w && w.name === document.body.dataset.window ? f(w) : null;
  }
  function setText(el, text) { if (el.textContent !== text) el.textContent = text; }

  function onStats(list) {
    if (!Array.isArray(list)) return;
    var by = {};
    list.forEach(function (s) { if (s && s.name) { s.totals = s.totals || {}; by[s.name] = s; } });
    $$('[data-h]').forEach(function (scope) {
      var s = by[scope.dataset.h];
      if (!s) return;
      within(scope, '[data-stat]').forEach(function (el) {
        var k = el.dataset.stat;
        if (k === 'last_activity') {
          var t = el.querySelector('time');
          if (t && s.last_activity) t.setAttribute('datetime', s.last_activity);
          return;
        }
        if (!stat[k]) return;
        var text = stat[k](s);
        if (text === null) return;
        setText(el, text);
        if (k === 'dead_letters' && el.tagName === 'SPAN') el.classList.toggle('count-alert', s.dead_letters > 0);
      });
      within(scope, '[data-online]').forEach(function (el) {
        el.classList.toggle('on', s.consumers_online > 0);
        el.classList.toggle('off', !(s.consumers_online > 0));
        var pl = el.querySelector('[data-plural]');
        if (pl) pl.textContent = s.consumers_online === 1 ? '' : 's';
      });
      if (Array.isArray(s.rate)) {
        within(scope, 'svg[data-spark]').forEach(function (svg) { drawSpark(svg, s.rate); });
        within(scope, '[data-rate-chart]').forEach(function (box) { drawRateChart(box, s.rate); });
      }
    });
    var totals = document.querySelector('[data-totals]');
    if (totals) {
      var t = { handlers: list.length, consumers_online: 0, calls_per_second: 0, calls: 0, backlog: 0, dead_letters: 0 };
      list.forEach(function (s) {
        t.consumers_online += s.consumers_online || 0;
        t.calls_per_second += s.calls_per_second || 0;
        t.calls += (s.totals && s.totals.calls) || 0;
        t.backlog += s.backlog || 0;
        t.dead_letters += s.dead_letters || 0;
      });
      $$('[data-total]', totals).forEach(function (el) {
        var k = el.dataset.total;
        setText(el, k === 'calls_per_second' ? fmtRate(t[k]) : count(t[k]));
      });
      $$('[data-total-tile="dead_letters"]', totals).forEach(function (el) { el.classList.toggle('alert', t.dead_letters > 0); });
    }
  }

  // --- a running async call's streamed progress (docs/streaming.md) ---
  (function () {
    var box = document.querySelector('[data-call-progress]');
    var waiting = document.querySelector('[data-call-waiting]');
    if (!box || !waiting || !window.EventSource) return;
    var es = new EventSource('/rpc/calls/' + seg(waiting.dataset.callWaiting) + '/events');
    var partials = 0;
    es.addEventListener('partial', function () {
      partials++;
      box.hidden = false;
      box.querySelector('[data-partials]').textContent = String(partials);
    });
    es.addEventListener('progress', function (ev) {
      box.hidden = false;
      box.querySelector('[data-progress]').textContent = ev.data;
    });
    es.addEventListener('restart', function () { partials = 0; });
    var done = function () { es.close(); location.reload(); };
    es.addEventListener('result', done);
    es.addEventListener('error', function (ev) { if (ev.data) { done(); } else { es.close(); } });
  })();

  // --- live activity ---
  function onActivity(a) {
    if (!a || !a.id) return;
    var waiting = document.querySelector('[data-call-waiting]');
    if (waiting && waiting.dataset.callWaiting === a.id) { location.reload(); return; }
    var only = document.body.dataset.handler;
    if (only && a.handler !== only) return;
    $$('tbody[data-feed]').forEach(function (tbody) {
      var wrap = tbody.closest('.feed-wrap');
      var tpl = wrap && wrap.querySelector('template[data-feed-row]');
      if (!tpl) return;
      var tr = tpl.content.firstElementChild.cloneNode(true);
      var slot = function (n) { return tr.querySelector('[data-slot="' + n + '"]'); };
      var when = new Date(a.time || Date.now());
      tr.dataset.id = a.id;
      var tm = slot('time');
      tm.textContent = clock(when); tm.setAttribute('datetime', when.toISOString()); tm.title = full(when);
      var h = slot('handler'); h.textContent = a.handler; h.href = '/ui/handlers/' + seg(a.handler);
      var m = slot('method'); m.textContent = a.method; m.href = '/ui/handlers/' + seg(a.handler) + '/methods#m-' + seg(a.method);
      var e = slot('error'); e.textContent = a.error || ''; e.hidden = !a.error;
      var o = slot('outcome'); o.textContent = a.outcome; o.className = 'badge ' + outcomeClass(a.outcome);
      slot('duration').textContent = fmtMS(a.duration_ms);
      slot('attempt').textContent = String(a.attempt || '');
      slot('consumer').textContent = a.consumer || '';
      var id = slot('id'); id.textContent = a.id; id.href = '/ui/calls/' + seg(a.id);
      tr.classList.add('fresh');
      $$('[data-empty]', tbody).forEach(function (r) { r.remove(); });
      tbody.insertBefore(tr, tbody.firstChild);
      var limit = +tbody.dataset.feedLimit || 25;
      while (tbody.rows.length > limit) tbody.deleteRow(tbody.rows.length - 1);
    });
  }

  // --- the event stream ---
  var live = document.querySelector('[data-live]');
  function setLive(state, text) {
    if (!live) return;
    live.hidden = false;
    live.classList.toggle('on', state === 'on');
    live.classList.toggle('off', state === 'off');
    live.querySelector('[data-live-text]').textContent = text;
    live.title = state === 'on' ? 'Numbers and activity update live' : 'Live updates interrupted; retrying';
  }
  if (window.EventSource) {
    var es = new EventSource('/events');
    setLive('', 'connecting');
    es.onopen = function () { setLive('on', 'live'); };
    es.onerror = function () { setLive('off', 'reconnecting'); };
    es.addEventListener('stats', function (ev) {
      try { onStats(JSON.parse(ev.data)); } catch (err) { console.warn('stats event:', err); }
    });
    es.addEventListener('activity', function (ev) {
      try { onActivity(JSON.parse(ev.data)); } catch (err) { console.warn('activity event:', err); }
    });
    window.addEventListener('pagehide', function () { es.close(); });
  }

  // --- JSON pretty-printing of raw text (numbers kept exactly as sent) ---
  function prettyTokens(text) {
    var out = [], depth = 0, i = 0, n = text.length;
    var push = function (cls, t) { out.push([cls, t]); };
    var nl = function () { push('', '\n' + '  '.repeat(depth)); };
    var nextNonSpace = function (j) { while (j < n && /\s/.test(text[j])) j++; return j; };
    while (i < n) {
      var c = text[i];
      if (/\s/.test(c)) { i++; continue; }
      if (c === '"') {
        var j = i + 1;
        while (j < n && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
        j = Math.min(j + 1, n);
        push(text[nextNonSpace(j)] === ':' ? 'jk' : 'js', text.slice(i, j));
        i = j;
      } else if (c === '{' || c === '[') {
        var k = nextNonSpace(i + 1);
        if (text[k] === (c === '{' ? '}' : ']')) { push('', c + text[k]); i = k + 1; continue; }
        push('', c); depth++; nl(); i++;
      } else if (c === '}' || c === ']') {
        depth = Math.max(depth - 1, 0); nl(); push('', c); i++;
      } else if (c === ',') { push('', ','); nl(); i++; }
      else if (c === ':') { push('', ': '); i++; }
      else {
        var m = /^(-?[0-9][0-9.eE+-]*|true|false|null)/.exec(text.slice(i, i + 64));
        if (!m) { push('', text.slice(i)); break; }
        push(m[1] === 'null' ? 'jz' : (m[1] === 'true' || m[1] === 'false') ? 'jb' : 'jn', m[1]);
        i += m[1].length;
      }
    }
    return out;
  }
  function renderJSON(pre, text) {
    pre.textContent = '';
    var parsed = true;
    try { JSON.parse(text); } catch (e) { parsed = false; }
    if (!parsed) { pre.textContent = text; return; }
    prettyTokens(text).forEach(function (t) {
      if (!t[0]) { pre.appendChild(document.createTextNode(t[1])); return; }
      var s = document.createElement('span');
      s.className = t[0]; s.textContent = t[1];
      pre.appendChild(s);
    });
  }

  // --- try it ---
  $$('form[data-tryit]').forEach(function (form) {
    var ta = form.querySelector('[data-params]');
    var btn = form.querySelector('[data-call]');
    var box = form.querySelector('[data-result]');
    var badge = form.querySelector('[data-result-status]');
    var took = form.querySelector('[data-result-time]');
    var link = form.querySelector('[data-result-link]');
    var body = form.querySelector('[data-result-body]');
    function show(cls, label, time, id, text) {
      box.hidden = false;
      badge.className = 'badge ' + cls; badge.textContent = label;
      took.textContent = time;
      link.hidden = !id;
      if (id) { link.textContent = 'call ' + id + ' →'; link.href = '/ui/calls/' + seg(id); }
      renderJSON(body, text);
    }
    ta.addEventListener('keydown', function (ev) {
      if (ev.key === 'Enter' && (ev.metaKey || ev.ctrlKey)) { ev.preventDefault(); form.requestSubmit(); }
    });
    ta.addEventListener('input', function () { ta.classList.remove('invalid'); });
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var params = ta.value.trim();
      if (params) {
        try { JSON.parse(params); } catch (err) {
          ta.classList.add('invalid');
          show('err', 'invalid JSON', '', '', err.message);
          return;
        }
      }
      var headers = { 'Content-Type': 'application/json' };
      var timeout = form.querySelector('[data-timeout]');
      if (timeout && timeout.value) headers['Request-Timeout'] = timeout.value;
      btn.disabled = true;
      var t0 = performance.now();
      fetch(form.getAttribute('action'), { method: 'POST', headers: unsafeHeaders(headers), body: params, credentials: 'same-origin' })
        .then(function (res) {
          return res.text().then(function (text) {
            var ms = performance.now() - t0;
            var label = res.status + ' ' + (res.ok ? 'ok' : 'error');
            try {
              var j = JSON.parse(text);
              if (j && j.error && typeof j.error.code === 'number') label = res.status + ' · ' + j.error.code;
            } catch (e) { /* shown as text */ }
            show(res.ok ? 'ok' : 'err', label, 'in ' + fmtMS(ms), res.headers.get('X-Request-Id'), text);
          });
        })
        .catch(function (err) { show('err', 'network error', '', '', String(err)); })
        .finally(function () { btn.disabled = false; });
    });
  });

  // --- dead letters: replay (a form that also works without JS) and delete ---
  function status(container, cls, text) {
    var el = container.querySelector('[data-action-status]');
    if (!el) return;
    el.className = 'action-status small ' + cls;
    el.textContent = text;
  }
  function settle(container, text) {
    $$('button', container).forEach(function (b) { b.disabled = true; });
    status(container, 'ok', text);
    var row = container.closest('tr');
    if (row) row.classList.add('gone');
  }
  function answerText(res) {
    return res.text().then(function (t) {
      try { var j = JSON.parse(t); if (j.error) return j.error.message; } catch (e) { /* plain */ }
      return 'HTTP ' + res.status;
    });
  }
  $$('form[data-replay]').forEach(function (form) {
    var container = form.parentNode;
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var btn = form.querySelector('button');
      btn.disabled = true;
      status(container, '', 'replaying…');
      fetch(form.getAttribute('action'), { method: 'POST', headers: unsafeHeaders(), credentials: 'same-origin' }).then(function (res) {
        if (res.ok) {
          settle(container, 'replayed');
          var callout = document.querySelector('.dead-callout');
          if (callout) { callout.dataset.callWaiting = callout.dataset.callId; }
          return;
        }
        btn.disabled = false;
        return answerText(res).then(function (t) { status(container, 'err', t); });
      }).catch(function (err) { btn.disabled = false; status(container, 'err', String(err)); });
    });
  });
  // --- handler-wide limits: PUT /handlers/{name}/limits (an empty field
  // clears the API's value), Clear: DELETE; the form shows what is in effect.
  $$('form[data-limits-form]').forEach(function (form) {
    var container = form, clear = form.querySelector('[data-limits-clear]');
    function show(res) {
      return res.json().then(function (j) {
        form.elements.max_concurrency.value = j.effective.max_concurrency || '';
        form.elements.rate.value = j.effective.rate || '';
        status(container, 'ok', 'in effect within 2 s');
      });
    }
    function send(method, body) {
      status(container, '', 'saving…');
      var init = { method: method, headers: unsafeHeaders(body ? { 'Content-Type': 'application/json' } : {}), credentials: 'same-origin' };
      if (body) init.body = JSON.stringify(body);
      fetch(form.getAttribute('action'), init).then(function (res) {
        if (res.ok) return show(res);
        return answerText(res).then(function (t) { status(container, 'err', t); });
      }).catch(function (err) { status(container, 'err', String(err)); });
    }
    function field(name) {
      var v = form.elements[name].value.trim();
      return v === '' ? null : Number(v);
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      send('PUT', { max_concurrency: field('max_concurrency'), rate: field('rate') });
    });
    clear.hidden = false;
    clear.addEventListener('click', function () { send('DELETE'); });
  });
  $$('button[data-delete]').forEach(function (btn) {
    var container = btn.parentNode, armed = null;
    btn.hidden = false;
    btn.addEventListener('click', function () {
      if (!armed) {
        btn.textContent = 'Confirm delete';
        armed = setTimeout(function () { armed = null; btn.textContent = 'Delete'; }, 4000);
        return;
      }
      clearTimeout(armed); armed = null;
      btn.disabled = true;
      fetch(btn.dataset.delete, { method: 'DELETE', headers: unsafeHeaders(), credentials: 'same-origin' }).then(function (res) {
        if (res.ok || res.status === 204) { btn.textContent = 'Delete'; settle(container, 'deleted'); return; }
        btn.disabled = false; btn.textContent = 'Delete';
        return answerText(res).then(function (t) { status(container, 'err', t); });
      }).catch(function (err) { btn.disabled = false; status(container, 'err', String(err)); });
    });
  });

  // --- operator actions: pause, resume, purge, cancel, run now, bulk ---
  // Each is a POST to the edge's API (admin scope; the session's CSRF
  // token), then the page shows the new state.
  function post(url, body) {
    var h = { 'Content-Type': 'application/json' };
    return fetch(url, { method: 'POST', headers: unsafeHeaders(h), body: body ? JSON.stringify(body) : '', credentials: 'same-origin' });
  }
  $$('form[data-action]').forEach(function (form) {
    var btn = form.querySelector('button');
    var confirmIn = form.querySelector('[data-purge-confirm]');
    if (confirmIn) {
      confirmIn.addEventListener('input', function () { btn.disabled = confirmIn.value !== confirmIn.dataset.purgeConfirm; });
    }
    form.addEventListener('submit', function (ev) {
      ev.preventDefault();
      var body = {};
      $$('input[name]', form).forEach(function (i) { body[i.name] = i.value; });
      btn.disabled = true;
      status(form, '', form.dataset.action + '…');
      post(form.getAttribute('action'), body).then(function (res) {
        if (res.ok) {
          return res.json().then(function (j) {
            status(form, 'ok', form.dataset.action === 'purge' ? 'purged ' + j.purged : 'done');
            if (form.dataset.action !== 'purge') location.reload();
          });
        }
        btn.disabled = false;
        return answerText(res).then(function (t) { status(form, 'err', t); });
      }).catch(function (err) { btn.disabled = false; status(form, 'err', String(err)); });
    });
  });
  $$('button[data-act]').forEach(function (btn) {
    var container = btn.parentNode, armed = null, label = btn.textContent;
    btn.addEventListener('click', function () {
      if (btn.hasAttribute('data-confirm') && !armed) {
        btn.textContent = 'Confirm ' + label.toLowerCase();
        armed = setTimeout(function () { armed = null; btn.textContent = label; }, 4000);
        return;
      }
      clearTimeout(armed); armed = null; btn.textContent = label;
      btn.disabled = true;
      post(btn.dataset.act).then(function (res) {
        if (res.ok) {
          return res.json().then(function (j) {
            settle(container, j.cancel_requested ? 'cancel requested' : j.cancelled ? 'cancelled' : 'queued');
          });
        }
        btn.disabled = false;
        return answerText(res).then(function (t) { status(container, 'err', t); });
      }).catch(function (err) { btn.disabled = false; status(container, 'err', String(err)); });
    });
  });
  $$('[data-bulk]').forEach(function (box) {
    var all = box.querySelector('[data-select-all]');
    var boxes = $$('input[data-select]', box);
    if (all) all.addEventListener('change', function () { boxes.forEach(function (b) { if (!b.disabled) b.checked = all.checked; }); });
    $$('button[data-bulk-action]', box).forEach(function (btn) {
      btn.hidden = false;
      btn.addEventListener('click', function () {
        var picked = boxes.filter(function (b) { return b.checked && !b.disabled; });
        var bar = btn.parentNode;
        if (!picked.length) { status(bar, 'err', 'select dead letters first'); return; }
        var action = btn.dataset.bulkAction;
        btn.disabled = true;
        post(box.dataset.bulk, { action: action, ids: picked.map(function (b) { return b.value; }) }).then(function (res) {
          btn.disabled = false;
          if (!res.ok) return answerText(res).then(function (t) { status(bar, 'err', t); });
          return res.json().then(function (j) {
            var ok = {};
            (j.results || []).forEach(function (r) { if (r.ok) ok[r.dead_letter_id] = true; });
            picked.forEach(function (b) {
              if (!ok[b.value]) return;
              b.checked = false; b.disabled = true;
              var row = b.closest('tr');
              if (row) { row.classList.add('gone'); $$('button', row).forEach(function (x) { x.disabled = true; }); }
            });
            status(bar, 'ok', (action === 'replay' ? 'replayed ' : 'deleted ') + j.done);
          });
        }).catch(function (err) { btn.disabled = false; status(bar, 'err', String(err)); });
      });
    });
  });
})();
