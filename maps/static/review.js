/* The review queue (/pages/review): flagged assignments, newest first, paged by the API's `next`; each
   says why it is flagged and can be accepted or moved to a nearby group grid. Text nodes only. */
(function () {
  'use strict';

  var W = window.Wangge;
  var I = window.WanggeIncident;
  var N = (W.config && W.config.incident) || {};
  var T = N.texts || {};
  var list, more, total, shown = 0, next = null, count = 0;

  function byId(id) { return document.getElementById(id); }

  /* The `next` link as a path on this site (the API answers an absolute URL). */
  function local(url) {
    var u = new URL(url, location.href);
    return u.pathname + u.search;
  }

  function query() {
    var params = new URLSearchParams({limit: String(W.config.page_size || 20)});
    var category = byId('review-category').value;
    var grid = byId('review-grid').value.trim();
    var overdue = byId('review-overdue').value;
    if (category) { params.set('category', category); }
    if (grid) { params.set('grid_code', grid); }
    if (overdue) { params.set('overdue', overdue); }
    return '/incidents/review?' + params.toString();
  }

  function removeItem(item, text) {
    item.remove();
    shown -= 1;
    count = Math.max(0, count - 1);
    W.notice(text);
    summary();
  }

  function summary() {
    total.textContent = count ? I.fmt(T.queue_total, {total: count, shown: shown}) : T.queue_empty;
  }

  function card(d) {
    var item = W.el('li', {'class': 'review-item', dataset: {id: d.id}});
    var kind = d.dispute_kind ? '·' + W.name('dispute_kind', d.dispute_kind) : '';
    var reasons = I.reasonTexts(d);
    var accept = W.el('button', {type: 'button', 'class': 'review-accept', text: N.actions.review});
    var move = W.el('button', {type: 'button', 'class': 'review-reassign', text: N.actions.reassign});
    var form = null;
    accept.addEventListener('click', function () {
      accept.disabled = true;
      W.api('/incidents/' + d.id + '/review', {method: 'POST'}).then(function () {
        W.clearError();
        removeItem(item, T.reviewed + '：事件 #' + d.id);
      }, function (err) { accept.disabled = false; W.showError(err); });
    });
    move.addEventListener('click', function () {
      if (form) { return; }
      form = I.reassignForm(d.id, function (detail) {
        var group = (detail.grid_path || []).slice(-1)[0] || {};
        removeItem(item, I.fmt(T.reassigned, {name: group.name || detail.group_code, code: detail.group_code}));
      });
      item.appendChild(form);
    });
    W.append(item, [
      W.el('h3', null, W.el('a', {href: '/pages/incidents/' + d.id, text: '事件 #' + d.id}), ' ',
        W.name('category', d.category) + kind),
      W.el('p', {'class': 'incident-muted', text: W.time(d.occurred_at) + ' · ' + I.stateName(d.state)
        + (d.overdue ? ' · ' + T.overdue : '')}),
      W.el('p', {'class': 'review-description', text: d.description}),
      W.el('ul', {'class': 'review-reasons'}, reasons.map(function (r) { return W.el('li', {text: r}); })),
      W.el('p', {'class': 'incident-muted', text: '现归属网格：' + d.group_code + ' · 经度 '
        + Number(d.lon).toFixed(6) + '，纬度 ' + Number(d.lat).toFixed(6)}),
      W.el('div', {'class': 'review-buttons'}, accept, move,
        W.el('a', {'class': 'review-open', href: '/pages/incidents/' + d.id, text: '查看详情'}))
    ]);
    return item;
  }

  var latest = 0;
  function load(url, append) {
    var mine = ++latest;
    more.disabled = true;
    return W.api(url).then(function (page) {
      if (mine !== latest) { return; }   // a newer query (another filter) has been asked for
      if (!append) { list.textContent = ''; shown = 0; }
      page.items.forEach(function (d) { list.appendChild(card(d)); });
      shown += page.items.length;
      count = page.total;
      next = page.next ? local(page.next) : null;
      more.hidden = !next;
      list.dataset.query = url;
      summary();
    }, W.showError).then(function () {
      more.disabled = false;
      document.documentElement.dataset.wanggeReady = '1';
    });
  }

  W.ready(function () {
    list = byId('review-list');
    more = byId('review-more');
    total = byId('review-total');
    total.textContent = T.loading;
    var select = byId('review-category');
    var categories = (W.config.names || {}).category || {};
    Object.keys(categories).forEach(function (code) {
      select.appendChild(W.el('option', {value: code, text: categories[code]}));
    });
    byId('review-filter').addEventListener('submit', function (event) {
      event.preventDefault();
      var grid = byId('review-grid').value.trim();
      if (grid && !/^\d{15}$/.test(grid)) { W.showError(T.code_format); return; }
      W.clearError();
      load(query(), false);
    });
    more.addEventListener('click', function () { if (next) { load(next, true); } });
    load(query(), false);
  });
})();
