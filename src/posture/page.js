// meshguard posture page: renders the embedded data lazily (a namespace's workloads when it
// unfolds, one reachability matrix, one page of findings). No network access: the data is in
// the page, gzip-compressed and base64-encoded; DecompressionStream inflates it.
(function () {
  'use strict';
  var D = null;
  var PAGE = 100;
  var PRINT_ROWS = 5000;
  var $ = function (id) { return document.getElementById(id); };
  var ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
  function esc(s) { return String(s == null ? '' : s).replace(/[&<>"']/g, function (c) { return ESC[c]; }); }
  // Shapes are CSS (.sh): cheaper than SVG <use> when a page shows thousands of them.
  function icon() { return '<span class="sh" aria-hidden="true"></span>'; }
  var MODE_CLASS = { STRICT: 'strict', PERMISSIVE: 'permissive', DISABLE: 'disable' };
  var MODE_WORDS = {
    STRICT: 'mutual TLS required: plaintext connections are refused',
    PERMISSIVE: 'mutual TLS and plaintext are both accepted',
    DISABLE: 'mutual TLS is off: connections are plaintext'
  };
  var ACTIONS = ['deny', 'warn', 'audit'];

  function load() {
    var bin = atob($('posture-data').textContent.trim());
    var bytes = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).text().then(JSON.parse);
  }

  function where(file, line) {
    if (file == null) return '';
    return D.files[file] + (line ? ':' + line : '');
  }
  function wlLabel(w) { return w.k.toLowerCase() + ' ' + D.ns[w.ns].n + '/' + w.n; }
  function polLabel(p) { return p.ns + '/' + p.n; }

  // ---- detail panel ---------------------------------------------------------------------
  function showDetail(html) {
    $('detail-body').innerHTML = html;
    $('detail').hidden = false;
  }
  function policyBlock(pi, extra) {
    if (pi == null) return '';
    var p = D.pol[pi];
    var h = '<p><b>' + esc(p.k) + ' ' + esc(polLabel(p)) + '</b>' + (extra ? ' ' + esc(extra) : '') + '</p>';
    if (p.file != null) h += '<p class="muted">' + esc(where(p.file, p.line)) + '</p>';
    if (p.spec != null) h += '<pre class="policy-spec">spec: ' + esc(JSON.stringify(JSON.parse(p.spec), null, 2)) + '</pre>';
    return h;
  }
  function showPolicy(pi) {
    var p = D.pol[pi];
    showDetail('<h3 id="detail-title">' + esc(p.k) + ' ' + esc(polLabel(p)) + '</h3>' + policyBlock(pi));
  }
  function portTitle(w, c) {
    var port = c[0] == null ? 'every port' : 'port ' + c[0];
    var by = c[2] == null ? 'no PeerAuthentication sets a mode: Istio\'s default' :
      'decided by PeerAuthentication ' + polLabel(D.pol[c[2]]) + ' (' + c[3] + ' level)';
    var s = c[1] + ' on ' + port + ': ' + by;
    if (w.dp === 'none') s += '; the workload runs without a proxy, so nothing enforces it';
    return s;
  }
  function showPort(wi, k) {
    var w = D.wl[wi], c = w.p[k];
    var h = '<h3 id="detail-title">' + esc(wlLabel(w)) + ', ' + (c[0] == null ? 'every port' : 'port ' + c[0]) + '</h3>';
    h += '<p class="port-mode"><span class="m m-' + MODE_CLASS[c[1]] + '">' + icon(MODE_CLASS[c[1]]) + esc(c[1]) + '</span> ' + esc(MODE_WORDS[c[1]] || '') + '</p>';
    h += '<p>Protocol: ' + esc(c[4]) + '. Composed as istiod does: mesh → namespace → workload → port' + (w.dp === 'ztunnel' ? ', compiled for ztunnel (HBONE): STRICT refuses plaintext, anything else (DISABLE too) admits it while mesh clients keep mTLS' : '') + '.</p>';
    if (w.dp === 'none') h += '<p class="error">The workload runs without a proxy: nothing enforces this mode.</p>';
    if (c[2] == null) {
      h += '<p class="decided-by">Decided by: no PeerAuthentication sets a mode, so Istio\'s default PERMISSIVE applies.</p>';
    } else {
      h += '<p class="decided-by">Decided by: PeerAuthentication <b>' + esc(polLabel(D.pol[c[2]])) + '</b> (' + esc(c[3]) + ' level)</p>' + policyBlock(c[2]);
    }
    showDetail(h);
  }

  // ---- grid -------------------------------------------------------------------------------
  function findingsButtons(f, attr) {
    if (!f[0] && !f[1] && !f[2]) return '<span class="muted">none</span>';
    var h = '';
    for (var k = 0; k < 3; k++) {
      if (f[k]) h += '<button type="button" class="fa fa-' + ACTIONS[k] + '" ' + attr + ' data-fa="' + ACTIONS[k] + '" title="show these findings">' + f[k] + ' ' + ACTIONS[k] + '</button> ';
    }
    return h;
  }
  function workloadRow(wi) {
    var w = D.wl[wi];
    var h = '<tr class="wl" data-w="' + wi + '"><th scope="row" title="' + esc(where(w.file, w.line)) + '"><span class="kind">' + esc(w.k) + '</span> <span class="wlname">' + esc(w.n) + '</span></th>';
    h += '<td><span class="dp dp-' + esc(w.dp) + '">' + esc(w.dp) + '</span>' + (w.wp ? ' <span class="wp" title="ambient callers addressing it go through this waypoint">+ waypoint ' + esc(w.wp) + '</span>' : '') + '</td><td class="ports">';
    for (var k = 0; k < w.p.length; k++) {
      var c = w.p[k], cls = MODE_CLASS[c[1]] || 'permissive';
      h += '<button type="button" class="m m-' + cls + (w.dp === 'none' ? ' noproxy' : '') + '" data-w="' + wi + '" data-k="' + k + '" data-mode="' + esc(c[1]) + '" title="' + esc(portTitle(w, c)) + '">' + icon(cls) + (c[0] == null ? '*' : c[0]) + ' ' + esc(c[1]) + '<span class="proto">' + esc(c[4]) + '</span></button>';
    }
    if (!w.p.length) h += '<span class="muted">no ports</span>';
    h += '</td><td>';
    if (w.dd === 'deny-all') h += '<button type="button" class="dd dd-yes" data-pol="' + w.ddp + '" title="an allow-nothing policy applies: only what an ALLOW rule matches gets in">deny-all: ' + esc(D.pol[w.ddp].n) + '</button>';
    else if (w.dd === 'allow-list') h += '<span class="dd dd-allow" title="ALLOW policies apply, so a request none of them matches is denied">allow-list (' + w.ap + ' ALLOW)</span>';
    else h += '<span class="dd dd-no" title="no ALLOW policy applies: every caller gets in">open</span>';
    h += '</td><td class="sa"><span class="saname">' + esc(w.sa) + '</span>';
    if (w.sai || w.sa === 'default') h += ' <span class="tag warn" title="the pods share the namespace\'s default identity">default</span>';
    if (w.sax === 'missing') h += ' <span class="tag bad" title="no such ServiceAccount">missing</span>';
    h += '</td><td class="fc">' + findingsButtons(w.f, w.s == null ? '' : 'data-fs="' + w.s + '"') + '</td></tr>';
    return h;
  }
  function renderNamespace(tb) {
    if (tb.dataset.rendered) return;
    var ns = D.ns[+tb.dataset.i], h = '';
    for (var k = 0; k < ns.w.length; k++) h += workloadRow(ns.w[k]);
    tb.insertAdjacentHTML('beforeend', h);
    tb.dataset.rendered = '1';
  }
  function setOpen(tb, open) {
    if (open) renderNamespace(tb);
    tb.classList.toggle('open', open);
    var b = tb.querySelector('.fold');
    if (b) b.setAttribute('aria-expanded', open ? 'true' : 'false');
  }
  // Namespaces are paged (the rows of other pages stay in the document, hidden, so they cost
  // no layout); the search box pages through the namespaces that match.
  var NS = { list: null, hits: {}, page: 0, size: 50, shown: [] };
  var UNFOLD_BUDGET = 2000;
  function showNamespaces() {
    var list = NS.list, pages = Math.max(1, Math.ceil(list.length / NS.size));
    if (NS.page >= pages) NS.page = pages - 1;
    for (var i = 0; i < NS.shown.length; i++) NS.shown[i].hidden = true;
    NS.shown = [];
    var start = NS.page * NS.size, end = Math.min(list.length, start + NS.size);
    for (var k = start; k < end; k++) {
      var tb = $('ns-' + list[k]), hits = NS.hits[list[k]];
      if (hits) setOpen(tb, true);
      filterRows(tb, hits || null);
      tb.hidden = false;
      NS.shown.push(tb);
    }
    $('ns-page').textContent = list.length ? 'namespaces ' + (start + 1) + '–' + end + ' of ' + list.length : 'no namespace matches';
    $('ns-prev').disabled = NS.page === 0;
    $('ns-next').disabled = NS.page >= pages - 1;
    $('ns-pager').hidden = pages === 1 && NS.list.length === D.ns.length;
  }
  var searchTimer = 0;
  function applySearch() {
    var q = $('search').value.trim().toLowerCase();
    NS.list = []; NS.hits = {}; NS.page = 0;
    for (var i = 0; i < D.ns.length; i++) {
      var ns = D.ns[i];
      if (!q || ns.n.toLowerCase().indexOf(q) >= 0) { NS.list.push(i); continue; }
      var hits = null;
      for (var k = 0; k < ns.w.length; k++) {
        var w = D.wl[ns.w[k]];
        if (w.n.toLowerCase().indexOf(q) >= 0 || w.sa.toLowerCase().indexOf(q) >= 0) { (hits = hits || {})[ns.w[k]] = true; }
      }
      if (hits) { NS.list.push(i); NS.hits[i] = hits; }
    }
    showNamespaces();
    $('search-count').textContent = q ? NS.list.length + ' of ' + D.ns.length + ' namespaces match' : '';
  }
  function filterRows(tb, hits) {
    var rows = tb.querySelectorAll('tr.wl');
    for (var i = 0; i < rows.length; i++) rows[i].classList.toggle('nomatch', !!hits && !hits[rows[i].dataset.w]);
  }
  function unfoldAll() {
    var rows = 0, opened = 0, left = 0;
    for (var i = 0; i < NS.shown.length; i++) {
      var tb = NS.shown[i], n = D.ns[+tb.dataset.i].w.length;
      if (!n || tb.classList.contains('open')) continue;
      if (rows + n > UNFOLD_BUDGET && opened) { left++; continue; }
      setOpen(tb, true);
      rows += n; opened++;
    }
    $('search-count').textContent = left ? 'Unfolded ' + opened + ' namespaces (' + rows + ' workloads); ' + left + ' more on this page stay folded: unfold them one by one or narrow the list with the filter.' : '';
  }

  // ---- reachability ---------------------------------------------------------------------------
  // A cell is the set of requests a caller may send: A (all), S (some), N (none).
  var SUMMARY = { A: 'all', S: 'some', N: 'none' };
  var BADGE = { A: 'A', S: 'S', N: 'D' };
  var HOW = {
    'allow': 'its ALLOW rule matches',
    'deny': 'its DENY rule matches',
    'custom': 'its CUSTOM rule hands the request to the external authorizer',
    'default-deny': 'ALLOW policies apply and none of their rules matches (default deny)',
    'no-allow-policy': 'no ALLOW policy applies to the workload and no DENY rule matches',
    'refused': 'STRICT mTLS refuses a client without a mesh identity',
    'unenforced': 'the workload runs without a proxy: nothing enforces mTLS or AuthorizationPolicy',
    '401': 'the token is not accepted (401)',
    '400': 'the request is rejected before authorization (400)'
  };
  function deciderText(d) {
    var who = d[0] == null ? '' : D.pol[d[0]].k + ' ' + polLabel(D.pol[d[0]]) + (d[1] == null ? '' : ' rules[' + d[1] + ']') + ': ';
    return who + (HOW[d[2]] || d[2]) + (d[3] ? ' (at ' + d[3] + ')' : '');
  }
  function idLabel(id) { return id[0] === '' ? 'plaintext client (no mesh identity)' : id[0]; }
  // Cell codes: base 90 over ALPHABET, m.w characters each, dashes for "no port".
  var ALPHABET = '#$%&\'()*+,./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[]^_`abcdefghijklmnopqrstuvwxyz{|}~';
  function outcomeAt(m, r, c) {
    var at = c * m.w, n = 0;
    for (var i = 0; i < m.w; i++) {
      var d = ALPHABET.indexOf(m.c[r].charAt(at + i));
      if (d < 0) return -1;
      n = n * 90 + d;
    }
    return n;
  }
  function cellBadge(o) {
    return '<span class="v v-' + BADGE[o[0]] + '" data-summary="' + SUMMARY[o[0]] + '">' + icon() + SUMMARY[o[0]] + '</span>';
  }
  function renderReach(i) {
    var m = D.reach[i], ns = D.ns[i], box = $('reach');
    if (!m) { box.innerHTML = '<p class="muted">No workloads in ' + esc(ns.n) + '.</p>'; return; }
    var shown = m.ids.length - 1;
    var h = '<p>' + esc(ns.n) + ': ' + shown + ' identit' + (shown === 1 ? 'y' : 'ies') + ' and the plaintext client × ' + m.cols.length + ' workload' + (m.cols.length === 1 ? '' : 's') + '.';
    if (m.total > shown) h += ' <span class="cut">Cut: ' + shown + ' of ' + m.total + ' candidate identities shown (raise <code>--max-identities</code>, or ask <code>meshguard simulate</code> about one).</span>';
    h += ' Rows: the workloads\' own identities first, then those the policies that apply here name, the namespace\'s ServiceAccounts, and the workloads of namespaces those policies name.</p>';
    h += '<table class="reach" id="reach-table" data-ns="' + esc(ns.n) + '"><thead><tr><th scope="col">caller ↓ / workload →</th>';
    for (var c = 0; c < m.cols.length; c++) {
      var col = m.cols[c], w = D.wl[col[0]];
      h += '<th scope="col" class="col" title="' + esc(wlLabel(w)) + '">' + esc(w.n) + '<span class="port">' + (col[1] == null ? 'no port' : ':' + col[1] + ' ' + esc(col[2])) + '</span></th>';
    }
    h += '</tr></thead><tbody>';
    for (var r = 0; r < m.ids.length; r++) {
      var id = m.ids[r];
      h += '<tr><th scope="row" class="row">' + esc(idLabel(id)) + (id[0] === '' ? '' : '<span class="why">' + esc(id[1]) + '</span>') + '</th>';
      for (var c2 = 0; c2 < m.cols.length; c2++) {
        var k = outcomeAt(m, r, c2);
        if (k < 0) { h += '<td><span class="v v-N" title="the workload declares no port">n/a</span></td>'; continue; }
        h += '<td><button type="button" class="rc" data-r="' + r + '" data-c="' + c2 + '">' + cellBadge(m.o[k]) + '</button></td>';
      }
      h += '</tr>';
    }
    box.innerHTML = h + '</tbody></table>';
    box.dataset.ns = String(i);
  }
  function cellTitle(m, r, c) {
    var k = outcomeAt(m, r, c);
    if (k < 0) return '';
    var o = m.o[k];
    return SUMMARY[o[0]] + (o[0] === 'S' ? ': ' + o[1] : '') + (o[4] != null ? '; path: ' + m.hops[o[4]] : '');
  }
  function showCell(r, c) {
    var i = +$('reach').dataset.ns, m = D.reach[i], col = m.cols[c], w = D.wl[col[0]];
    var k = outcomeAt(m, r, c);
    if (k < 0) return;
    var o = m.o[k], id = m.ids[r];
    var h = '<h3 id="detail-title">' + esc(idLabel(id)) + ' → ' + esc(wlLabel(w)) + ':' + col[1] + '</h3>';
    h += '<p class="cell-verdict"><b>' + cellBadge(o) + '</b> ' + (o[0] === 'A' ? 'every request' : o[0] === 'N' ? 'no request' : 'these requests') + ' (' + esc(col[2]) + ' port):</p>';
    if (o[0] === 'S') {
      h += '<ul class="cell-set">';
      var alts = o[1].split('; ');
      for (var a = 0; a < alts.length; a++) h += '<li><code>' + esc(alts[a]) + '</code></li>';
      h += '</ul>';
    }
    if (o[4] != null) h += '<p class="hops">Path: ' + esc(m.hops[o[4]]) + '</p>';
    var seen = {};
    function block(title, list) {
      if (!list.length) return '';
      var s = '<div class="deciding"><p>' + title + '</p><ul>';
      for (var d = 0; d < list.length; d++) s += '<li>' + esc(deciderText(list[d])) + '</li>';
      s += '</ul>';
      for (var e = 0; e < list.length; e++) {
        var pi = list[e][0];
        if (pi != null && !seen[pi]) { seen[pi] = true; s += policyBlock(pi, list[e][1] == null ? '' : 'rules[' + list[e][1] + ']'); }
      }
      return s + '</div>';
    }
    h += block('Allowed by:', o[2]);
    h += block(o[0] === 'N' ? 'Refused by:' : 'The other requests are refused by:', o[3]);
    var from = id[0] === '' ? '--plaintext' : '--from ' + id[0];
    h += '<p class="muted">Ask about one request: <code>meshguard simulate … ' + esc(from) + ' --to ' + esc(D.ns[w.ns].n + '/' + w.n) + ' --port ' + col[1] + ' --method GET --path /</code></p>';
    showDetail(h);
  }

  // ---- findings ---------------------------------------------------------------------------
  var F = { ns: '', rule: '', action: '', subj: null, page: 0 };
  function matches(f, skip) {
    var s = D.subj[f[0]];
    return (skip === 'ns' || !F.ns || s[1] === F.ns) &&
      (skip === 'rule' || F.rule === '' || String(f[1]) === F.rule) &&
      (skip === 'action' || !F.action || f[2] === F.action) &&
      (F.subj == null || f[0] === F.subj);
  }
  function options(sel, all, entries, value) {
    var h = '<option value="">' + esc(all) + '</option>';
    for (var i = 0; i < entries.length; i++) {
      var e = entries[i];
      h += '<option value="' + esc(e[0]) + '"' + (String(e[0]) === value ? ' selected' : '') + '>' + esc(e[1]) + ' (' + e[2] + ')</option>';
    }
    sel.innerHTML = h;
  }
  function renderFindings() {
    var byNs = {}, byRule = {}, byAction = { deny: 0, warn: 0, audit: 0 }, rows = [];
    var nAll = 0, nsAll = 0, ruleAll = 0;
    for (var i = 0; i < D.fd.length; i++) {
      var f = D.fd[i], ns = D.subj[f[0]][1];
      if (matches(f, 'ns')) { byNs[ns] = (byNs[ns] || 0) + 1; nsAll++; }
      if (matches(f, 'rule')) { byRule[f[1]] = (byRule[f[1]] || 0) + 1; ruleAll++; }
      if (matches(f, 'action')) { byAction[f[2]] = (byAction[f[2]] || 0) + 1; nAll++; }
      if (matches(f, null)) rows.push(i);
    }
    options($('f-ns'), 'all namespaces (' + nsAll + ')', Object.keys(byNs).sort().map(function (n) { return [n, n || '(cluster-scoped)', byNs[n]]; }), F.ns);
    options($('f-rule'), 'all rules (' + ruleAll + ')', Object.keys(byRule).map(function (r) { return [r, D.rules[r][0], byRule[r]]; }).sort(function (a, b) { return a[1] < b[1] ? -1 : 1; }), F.rule);
    options($('f-action'), 'all actions (' + nAll + ')', ACTIONS.filter(function (a) { return byAction[a]; }).map(function (a) { return [a, a, byAction[a]]; }), F.action);
    var pages = Math.max(1, Math.ceil(rows.length / PAGE));
    if (F.page >= pages) F.page = pages - 1;
    var start = F.page * PAGE, end = Math.min(rows.length, start + PAGE);
    var counts = { deny: 0, warn: 0, audit: 0 };
    for (var j = 0; j < rows.length; j++) counts[D.fd[rows[j]][2]]++;
    $('f-count').innerHTML = 'Showing ' + (rows.length ? start + 1 : 0) + '–' + end + ' of <b id="f-total">' + rows.length + '</b> finding' + (rows.length === 1 ? '' : 's') +
      (rows.length === D.fd.length ? '' : ' (filtered from ' + D.fd.length + ')') + ': ' +
      ACTIONS.map(function (a) { return '<span data-action-count="' + a + '">' + counts[a] + ' ' + a + '</span>'; }).join(', ') + '.';
    var h = '';
    for (var k = start; k < end; k++) {
      var x = D.fd[rows[k]], s = D.subj[x[0]], rule = D.rules[x[1]];
      var obj = s[0] + ' ' + (s[1] && s[0] !== 'Namespace' ? s[1] + '/' : '') + s[2];
      h += '<tr data-action="' + esc(x[2]) + '"><td class="act act-' + esc(x[2]) + '">' + esc(x[2]) + '</td><td><code title="' + esc(rule[1]) + '">' + esc(rule[0]) + '</code></td><td>' + esc(obj) +
        (s[3] != null ? '<div class="muted mono">' + esc(where(s[3], s[4])) + '</div>' : '') + '</td><td class="path">' + esc(x[3]) + '</td><td class="msg">' + esc(x[4]) + '</td><td>' + esc(x[5]) + '</td></tr>';
    }
    $('fbody').innerHTML = h || '<tr><td colspan="6" class="muted">No findings.</td></tr>';
    $('f-page').textContent = 'page ' + (F.page + 1) + ' of ' + pages;
    $('f-prev').disabled = F.page === 0;
    $('f-next').disabled = F.page >= pages - 1;
    if (F.subj != null) {
      var so = D.subj[F.subj];
      $('f-object').innerHTML = '<span class="tag">object: ' + esc(so[0] + ' ' + so[1] + '/' + so[2]) + '</span>';
    } else {
      $('f-object').innerHTML = '';
    }
  }
  function filterFindings(f) {
    F = { ns: f.ns || '', rule: '', action: f.action || '', subj: f.subj == null ? null : f.subj, page: 0 };
    renderFindings();
    $('findings-section').scrollIntoView();
  }

  // ---- wiring ---------------------------------------------------------------------------
  function init(data) {
    D = data;
    // Workloads travel as arrays (see model::WorkloadRow); name their fields once.
    D.wl = D.wl.map(function (a) {
      return { k: a[0], n: a[1], ns: a[2], dp: a[3], sa: a[4], sai: a[5], sax: a[6], p: a[7], dd: a[8], ddp: a[9], ap: a[10], f: a[11], s: a[12], file: a[13], line: a[14], wp: a[15] };
    });
    var grid = $('grid');
    grid.addEventListener('click', function (e) {
      var t = e.target.closest('button, [data-pol], .nsname');
      if (!t) return;
      if (t.classList.contains('fold') || t.classList.contains('nsname')) {
        var tb = t.closest('tbody.ns');
        if (D.ns[+tb.dataset.i].w.length) setOpen(tb, !tb.classList.contains('open'));
      } else if (t.classList.contains('m') && t.dataset.w != null) {
        showPort(+t.dataset.w, +t.dataset.k);
      } else if (t.dataset.pol != null) {
        showPolicy(+t.dataset.pol);
      } else if (t.classList.contains('fa')) {
        if (t.dataset.fs != null) filterFindings({ subj: +t.dataset.fs, action: t.dataset.fa });
        else filterFindings({ ns: D.ns[+t.dataset.fns].n, action: t.dataset.fa });
      }
    });
    $('search').addEventListener('input', function () { clearTimeout(searchTimer); searchTimer = setTimeout(applySearch, 120); });
    $('unfold-all').addEventListener('click', unfoldAll);
    $('fold-all').addEventListener('click', function () {
      var tbs = document.querySelectorAll('#grid tbody.ns.open');
      for (var i = 0; i < tbs.length; i++) setOpen(tbs[i], false);
    });
    NS.size = +grid.dataset.page || 50;
    NS.list = D.ns.map(function (_, i) { return i; });
    for (var s0 = 0; s0 < D.ns.length && s0 < NS.size; s0++) NS.shown.push($('ns-' + s0));
    showNamespaces();
    $('ns-prev').addEventListener('click', function () { NS.page--; showNamespaces(); });
    $('ns-next').addEventListener('click', function () { NS.page++; showNamespaces(); });
    // Reachability: namespaces with workloads, exempt ones last.
    var sel = $('reach-ns'), opts = '', first = -1, firstAny = -1;
    for (var i = 0; i < D.ns.length; i++) {
      if (!D.reach[i]) continue;
      if (firstAny < 0) firstAny = i;
      if (first < 0 && !D.ns[i].ex) first = i;
      opts += '<option value="' + i + '">' + esc(D.ns[i].n) + ' (' + D.ns[i].w.length + ')</option>';
    }
    if (first < 0) first = firstAny;
    sel.innerHTML = opts;
    if (first >= 0) { sel.value = String(first); renderReach(first); } else { $('reach').innerHTML = '<p class="muted">No workloads.</p>'; }
    sel.addEventListener('change', function () { renderReach(+sel.value); });
    $('reach').addEventListener('click', function (e) {
      var t = e.target.closest('.rc');
      if (t) showCell(+t.dataset.r, +t.dataset.c);
    });
    // Titles on hover only: thousands of cells, each a sentence or two.
    $('reach').addEventListener('mouseover', function (e) {
      var t = e.target.closest('.rc');
      if (t && !t.title) t.title = cellTitle(D.reach[+$('reach').dataset.ns], +t.dataset.r, +t.dataset.c);
    });
    $('f-ns').addEventListener('change', function () { F.ns = this.value; F.page = 0; renderFindings(); });
    $('f-rule').addEventListener('change', function () { F.rule = this.value; F.page = 0; renderFindings(); });
    $('f-action').addEventListener('change', function () { F.action = this.value; F.page = 0; renderFindings(); });
    $('f-clear').addEventListener('click', function () { F = { ns: '', rule: '', action: '', subj: null, page: 0 }; renderFindings(); });
    $('f-prev').addEventListener('click', function () { F.page--; renderFindings(); });
    $('f-next').addEventListener('click', function () { F.page++; renderFindings(); });
    $('detail-close').addEventListener('click', function () { $('detail').hidden = true; });
    document.addEventListener('keydown', function (e) { if (e.key === 'Escape') $('detail').hidden = true; });
    renderFindings();
    // Printing: the namespaces of the page on screen unfold (within the budget) and the
    // findings table lists every finding the filters select, not one page; both come back
    // after printing.
    var printState = null;
    window.addEventListener('beforeprint', function () {
      var opened = [];
      for (var i = 0; i < NS.shown.length; i++) {
        if (!NS.shown[i].classList.contains('open')) opened.push(NS.shown[i]);
      }
      unfoldAll();
      opened = opened.filter(function (tb) { return tb.classList.contains('open'); });
      printState = { opened: opened, page: PAGE };
      PAGE = PRINT_ROWS;
      F.page = 0;
      renderFindings();
      document.documentElement.setAttribute('data-printing', 'true');
    });
    window.addEventListener('afterprint', function () {
      if (!printState) return;
      for (var i = 0; i < printState.opened.length; i++) setOpen(printState.opened[i], false);
      PAGE = printState.page;
      printState = null;
      renderFindings();
      document.documentElement.removeAttribute('data-printing');
    });
    // Open the namespace when the page has one namespace with workloads (a small mesh).
    var withWorkloads = document.querySelectorAll('#grid tbody.ns .fold:not([disabled])');
    if (withWorkloads.length === 1) setOpen(withWorkloads[0].closest('tbody.ns'), true);
    window.meshguardPosture = { renderedMs: performance.now(), namespaces: D.ns.length, workloads: D.wl.length, findings: D.fd.length };
    document.documentElement.setAttribute('data-ready', 'true');
  }

  load().then(init).catch(function (e) {
    var p = document.createElement('p');
    p.className = 'error';
    p.textContent = 'This page could not read its data: ' + e;
    document.querySelector('main').prepend(p);
    throw e;
  });
})();
