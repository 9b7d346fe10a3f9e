/* The account page: who I am, my role and grids, the pages I may open. */
(function () {
  'use strict';
  Wangge.ready(function () {
    var cfg = Wangge.config;
    var shell = cfg.shell || {};
    var viewer = shell.viewer || {};
    document.getElementById('account-username').textContent = viewer.username || '';
    document.getElementById('account-role').textContent = viewer.role_zh || '';
    var scope = (cfg.account && cfg.account.scope_codes) || [];
    document.getElementById('account-scope').textContent = scope.length ? scope.join('、') : '全镇';
    var list = document.getElementById('account-pages');
    (cfg.pages || []).forEach(function (page) {
      list.appendChild(Wangge.el('li', null, Wangge.el('a', {href: page.href, text: page.label})));
    });
    document.documentElement.dataset.wanggeReady = '1';
  });
})();
