/* The page shell's script: window.Wangge — page config, same-origin API calls with refusals in Chinese,
   the error banner, DOM building from data (text nodes only), times in Beijing time. */
(function () {
  'use strict';

  var configElement = document.getElementById('wangge-config');
  var config = {};
  if (configElement) {
    try { config = JSON.parse(configElement.textContent || '{}'); } catch (e) { config = {}; }
  }
  var messages = config.messages || {status: {}, fields: {}, reasons: {}};

  function el(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (key) {
        var value = attrs[key];
        if (value === null || value === undefined || value === false) { return; }
        if (key === 'class') { node.className = value; }
        else if (key === 'text') { node.textContent = String(value); }
        else if (key.slice(0, 2) === 'on' && typeof value === 'function') {
          node.addEventListener(key.slice(2), value);
        } else if (key === 'dataset') {
          Object.keys(value).forEach(function (k) { node.dataset[k] = String(value[k]); });
        } else { node.setAttribute(key, value === true ? '' : String(value)); }
      });
    }
    for (var i = 2; i < arguments.length; i++) { append(node, arguments[i]); }
    return node;
  }

  function append(node, child) {
    if (child === null || child === undefined || child === false) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { append(node, c); }); return; }
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }

  function hasChinese(text) { return /[\u4e00-\u9fff]/.test(text || ''); }

  function fieldName(loc) {
    var parts = (loc || []).slice().reverse();
    for (var i = 0; i < parts.length; i++) {
      var part = parts[i];
      if (typeof part === 'string' && ['body', 'query', 'path', 'header', 'form'].indexOf(part) < 0) {
        return (messages.fields || {})[part] || part;
      }
    }
    return null;
  }

  function reasonText(kind, message) {
    if (message && hasChinese(message)) { return message; }
    return (messages.reasons || {})[kind] || messages.reason_fallback || '';
  }

  /* Chinese lines for a problem+json body (same rules as maps/shell.py problem_lines). */
  function problemLines(problem) {
    var lines = [];
    ((problem && problem.errors) || []).forEach(function (err) {
      if (!err || typeof err !== 'object') { return; }
      var name = fieldName(err.loc);
      var reason = reasonText(err.type || err.kind, err.msg || err.message);
      lines.push(name ? name + '：' + reason : reason);
    });
    if (!lines.length && problem && typeof problem.detail === 'string' && hasChinese(problem.detail)) {
      lines.push(problem.detail);
    }
    return lines;
  }

  function ApiError(status, problem, message) {
    this.name = 'ApiError';
    this.status = status;
    this.problem = problem;
    this.lines = problemLines(problem);
    this.message = message || ((messages.status || {})[String(status)] || messages.generic || '');
  }
  ApiError.prototype = Object.create(Error.prototype);
  ApiError.prototype.constructor = ApiError;

  function api(url, options) {
    options = options || {};
    var headers = Object.assign({'Accept': 'application/json'}, options.headers || {});
    var init = {method: options.method || 'GET', credentials: 'same-origin', headers: headers};
    if (options.json !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.json);
    } else if (options.body !== undefined) {
      init.body = options.body;
    }
    if (options.signal) { init.signal = options.signal; }
    return fetch(url, init).then(function (response) {
      var type = response.headers.get('Content-Type') || '';
      if (response.ok) {
        if (response.status === 204) { return null; }
        return type.indexOf('json') >= 0 ? response.json() : response.blob();
      }
      var read = type.indexOf('json') >= 0 ? response.json().catch(function () { return null; })
        : Promise.resolve(null);
      return read.then(function (problem) { throw new ApiError(response.status, problem); });
    }, function (err) {
      if (err && err.name === 'AbortError') { throw err; }
      throw new ApiError(0, null, messages.network);
    });
  }

  var banner = null;
  function showBanner(kind, text, lines) {
    banner = banner || document.getElementById('wangge-banner');
    if (!banner) { return; }
    banner.textContent = '';
    banner.className = 'wangge-banner' + (kind === 'error' ? ' error' : '');
    append(banner, el('span', {'class': 'text', text: text}));
    if (lines && lines.length) {
      append(banner, el('ul', null, lines.map(function (line) { return el('li', {text: line}); })));
    }
    if (kind === 'error' && arguments.length > 3 && arguments[3]) {
      append(banner, el('p', null, el('a', {href: '/login?next=' + encodeURIComponent(location.pathname + location.search),
        text: '重新登录'})));
    }
    append(banner, el('button', {type: 'button', 'class': 'close', 'aria-label': '关闭', text: '×',
      onclick: clearError}));
    banner.hidden = false;
  }

  function showError(err) {
    if (err && err.name === 'AbortError') { return; }
    if (err instanceof ApiError) {
      showBanner('error', err.message, err.lines, err.status === 401);
    } else if (typeof err === 'string') {
      showBanner('error', err);
    } else {
      showBanner('error', messages.generic || '');
      if (window.console && err) { console.warn(err); }
    }
  }
  function notice(text) { showBanner('notice', text); }
  function clearError() {
    banner = banner || document.getElementById('wangge-banner');
    if (banner) { banner.hidden = true; banner.textContent = ''; }
  }

  var beijing = new Intl.DateTimeFormat('zh-CN', {timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit',
    day: '2-digit', hour: '2-digit', minute: '2-digit', hour12: false});
  function time(iso) {
    if (!iso) { return ''; }
    var date = new Date(iso);
    if (isNaN(date.getTime())) { return String(iso); }
    var parts = {};
    beijing.formatToParts(date).forEach(function (p) { parts[p.type] = p.value; });
    return parts.year + '-' + parts.month + '-' + parts.day + ' ' + parts.hour + ':' + parts.minute;
  }

  function name(kind, code) {
    var table = (config.names || {})[kind] || {};
    return table[code] || code || '';
  }

  var readyCallbacks = [];
  var isReady = false;
  function ready(fn) { if (isReady) { fn(); } else { readyCallbacks.push(fn); } }

  function wireBar() {
    var button = document.getElementById('wangge-menu-button');
    var nav = document.getElementById('wangge-nav');
    if (button && nav) {
      button.addEventListener('click', function (event) {
        event.stopPropagation();
        var open = nav.classList.toggle('open');
        button.setAttribute('aria-expanded', open ? 'true' : 'false');
      });
      document.addEventListener('click', function (event) {
        if (!nav.contains(event.target)) { nav.classList.remove('open'); button.setAttribute('aria-expanded', 'false'); }
      });
    }
    var logout = document.getElementById('wangge-logout');
    if (logout) {
      logout.addEventListener('click', function () {
        api('/auth/logout', {method: 'POST'}).then(function () {
          location.assign('/login');
        }, showError);
      });
    }
  }

  window.Wangge = {
    config: config, api: api, ApiError: ApiError, problemLines: problemLines, showError: showError,
    notice: notice, clearError: clearError, el: el, append: append, time: time, name: name, ready: ready,
    map: null
  };

  function start() {
    wireBar();
    // Map pages: folium's script has made the map by now (it runs before deferred scripts finish).
    if (window.wanggeMap) { window.Wangge.map = window.wanggeMap; }
    isReady = true;
    readyCallbacks.splice(0).forEach(function (fn) {
      try { fn(); } catch (err) { showError(err); }
    });
  }
  if (document.readyState === 'loading') { document.addEventListener('DOMContentLoaded', start); }
  else { start(); }
})();
