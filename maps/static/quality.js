/* The register's data-quality page (/pages/quality): the report from GET /register/quality, a count per
   kind of finding and the findings themselves, each with a link where the reader may open it. Data is
   written as text (textContent), never as markup. */
(function () {
  'use strict';
  var HEADERS = ['对象', '户号', '网格', '说明'];
  Wangge.ready(function () {
    var cfg = Wangge.config.quality || {};
    var labels = cfg.labels || {};
    var form = document.getElementById('quality-form');
    var limitInput = document.getElementById('quality-limit');
    var status = document.getElementById('quality-status');
    var summaryBody = document.querySelector('#quality-summary tbody');
    var findingsBox = document.getElementById('quality-findings');
    var params = new URLSearchParams(location.search);
    limitInput.value = params.get('member_limit') || cfg.member_limit || 30;

    function url(format) {
      var q = new URLSearchParams({member_limit: limitInput.value});
      if (format) { q.set('format', format); }
      return cfg.url + '?' + q.toString();
    }

    function findingRow(f) {
      var subject = f.subject || f.grid_name || '';
      var where = f.grid_name ? f.grid_name + (f.grid_code ? '（' + f.grid_code + '）' : '') : '';
      var cells = [
        Wangge.el('td', {'class': 'quality-subject', 'data-label': HEADERS[0]},
          f.link ? Wangge.el('a', {href: f.link, text: subject}) : subject),
        Wangge.el('td', {'data-label': HEADERS[1], text: f.household_no || ''}),
        Wangge.el('td', {'data-label': HEADERS[2], text: where}),
        Wangge.el('td', {'class': 'quality-detail', 'data-label': HEADERS[3], text: f.detail || ''})
      ];
      return Wangge.el('tr', {dataset: {kind: f.kind, householdId: f.household_id || '', staffId: f.staff_id || '',
        shelterId: f.shelter_id || '', gridCode: f.grid_code || ''}}, cells);
    }

    function render(report) {
      summaryBody.textContent = '';
      findingsBox.textContent = '';
      var byKind = {};
      report.findings.forEach(function (f) { (byKind[f.kind] = byKind[f.kind] || []).push(f); });
      var problems = 0;
      report.summary.forEach(function (s) {
        problems += s.total;
        summaryBody.appendChild(Wangge.el('tr', {dataset: {kind: s.kind}},
          Wangge.el('td', null, s.total ? Wangge.el('a', {href: '#quality-' + s.kind, text: s.label}) : s.label),
          Wangge.el('td', {'class': 'quality-total', text: s.total}),
          Wangge.el('td', {text: s.hidden || ''})));
        if (!s.total) { return; }
        var rows = (byKind[s.kind] || []).map(findingRow);
        var notes = [];
        if (s.listed < s.total - s.hidden) { notes.push('只列出前 ' + s.listed + ' 条，完整清单请下载 CSV。'); }
        if (s.hidden) { notes.push('另有 ' + s.hidden + ' 户不在您的查看范围内，只计数不列出。'); }
        findingsBox.appendChild(Wangge.el('section', {id: 'quality-' + s.kind, 'class': 'quality-kind'},
          Wangge.el('h3', {text: s.label + '（' + s.total + '）'}),
          notes.map(function (n) { return Wangge.el('p', {'class': 'quality-note', text: n}); }),
          rows.length ? Wangge.el('div', {'class': 'quality-scroll'}, Wangge.el('table', {'class': 'quality-table'},
            Wangge.el('thead', null, Wangge.el('tr', null, HEADERS.map(function (h) {
              return Wangge.el('th', {text: h});
            }))),
            Wangge.el('tbody', null, rows))) : null));
      });
      var scope = report.area.length ? '（您负责的网格）' : '（全镇）';
      status.textContent = problems ? '共发现 ' + problems + ' 个问题' + scope : '未发现问题' + scope;
      document.getElementById('quality-csv').href = url('csv');
      document.getElementById('quality-xlsx').href = url('xlsx');
    }

    function load() {
      status.textContent = '正在检查…';
      Wangge.clearError();
      return Wangge.api(url()).then(render, function (err) {
        status.textContent = '检查失败';
        Wangge.showError(err);
      }).then(function () { document.documentElement.dataset.wanggeReady = '1'; });
    }

    form.addEventListener('submit', function (event) {
      event.preventDefault();
      document.documentElement.dataset.wanggeReady = '';
      load();
    });
    load();
  });
})();
