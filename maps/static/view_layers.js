/* Data by URL for the map pages (grids, incidents, households, hot spots): load a layer for the
   map's view, build popups and legends from text nodes, and say when the first data is on the map.
   Needs window.Wangge (maps/static/shell.js). */
(function () {
  'use strict';
  var W = window.Wangge;

  // "min_lon,min_lat,max_lon,max_lat" of the map's view, clamped to the world, 6 decimals.
  function bboxOf(map) {
    var b = map.getBounds();
    function c(v, lo, hi) { return Math.max(lo, Math.min(hi, v)).toFixed(6); }
    return [c(b.getWest(), -180, 180), c(b.getSouth(), -90, 90),
            c(b.getEast(), -180, 180), c(b.getNorth(), -90, 90)].join(',');
  }

  // A URL with query parameters; null, undefined and '' are left out.
  function withQuery(path, params) {
    var q = new URLSearchParams();
    Object.keys(params || {}).forEach(function (k) {
      var v = params[k];
      if (v !== null && v !== undefined && v !== '') { q.append(k, String(v)); }
    });
    var s = q.toString();
    return s ? path + (path.indexOf('?') >= 0 ? '&' : '?') + s : path;
  }

  function contains(outer, inner) {
    var o = outer.split(',').map(Number), i = inner.split(',').map(Number);
    return o[0] <= i[0] && o[1] <= i[1] && o[2] >= i[2] && o[3] >= i[3];
  }

  /* Reload `load(bbox, zoom)` (a function returning a promise) whenever the view settles; only the
     newest answer is drawn (`draw(result)`); errors go to the shell's banner. With
     `opts.complete(result)` saying an answer held everything in its box, a view inside that box
     is not asked again (zooming in on a complete answer costs no request). Returns {reload}. */
  function byView(map, load, draw, opts) {
    opts = opts || {};
    var seq = 0, timer = null, held = null;
    function run(force) {
      var bbox = bboxOf(map);
      if (!force && held && contains(held, bbox)) { return Promise.resolve(); }
      var mine = ++seq;
      return Promise.resolve(load(bbox, map.getZoom())).then(function (result) {
        if (mine !== seq) { return; }
        held = opts.complete && opts.complete(result) ? bbox : null;
        draw(result);
      }).catch(function (err) {
        if (mine === seq) { W.showError(err); }
      });
    }
    map.on('moveend', function () {
      clearTimeout(timer);
      timer = setTimeout(function () { run(false); }, opts.delay === undefined ? 150 : opts.delay);
    });
    return {reload: function () { return run(true); }};
  }

  // A popup table of (label, value) rows built from text nodes; blank values show `blank`.
  function table(rows, blank, idAttribute, id) {
    var t = document.createElement('table');
    t.className = 'wangge-popup-table';
    if (idAttribute) { t.setAttribute(idAttribute, String(id)); }
    rows.forEach(function (row) {
      var tr = t.insertRow();
      var th = document.createElement('th');
      th.textContent = row[0];
      var td = document.createElement('td');
      var v = row[1];
      if (v instanceof Node) { td.appendChild(v); }
      else { td.textContent = (v === null || v === undefined || v === '') ? blank : String(v); }
      tr.appendChild(th);
      tr.appendChild(td);
    });
    return t;
  }

  /* A legend control (bottom right): `title`, then rows {swatch: {fill, color, weight, radius?,
     dash?, opacity?}, label, key}, then lines {id, text, note}. Collapsed by default on a phone. */
  function legend(map, title) {
    var box = W.el('div', {'class': 'wangge-ui wangge-legend-box', id: 'wangge-legend'});
    var head = W.el('button', {type: 'button', 'class': 'wangge-legend-head'}, title);
    var body = W.el('div', {'class': 'wangge-legend-body'});
    box.appendChild(head);
    box.appendChild(body);
    if (window.matchMedia && window.matchMedia('(max-width: 700px)').matches) {
      box.classList.add('collapsed');
    }
    head.addEventListener('click', function () { box.classList.toggle('collapsed'); });
    var control = L.control({position: 'bottomright'});
    control.onAdd = function () {
      L.DomEvent.disableClickPropagation(box);
      L.DomEvent.disableScrollPropagation(box);
      return box;
    };
    control.addTo(map);
    function swatch(s) {
      var ns = 'http://www.w3.org/2000/svg';
      var svg = document.createElementNS(ns, 'svg');
      svg.setAttribute('width', '30');
      svg.setAttribute('height', '14');
      svg.setAttribute('aria-hidden', 'true');
      var shape;
      if (s.radius) {
        shape = document.createElementNS(ns, 'circle');
        shape.setAttribute('cx', '15'); shape.setAttribute('cy', '7');
        shape.setAttribute('r', String(Math.min(s.radius, 6.5)));
      } else if (s.line) {
        shape = document.createElementNS(ns, 'line');
        shape.setAttribute('x1', '1'); shape.setAttribute('y1', '7');
        shape.setAttribute('x2', '29'); shape.setAttribute('y2', '7');
      } else {
        shape = document.createElementNS(ns, 'rect');
        shape.setAttribute('x', '1'); shape.setAttribute('y', '1');
        shape.setAttribute('width', '28'); shape.setAttribute('height', '12');
      }
      shape.setAttribute('fill', s.line ? 'none' : (s.fill || 'none'));
      shape.setAttribute('fill-opacity', String(s.opacity === undefined ? 0.85 : s.opacity));
      shape.setAttribute('stroke', s.color || '#666');
      shape.setAttribute('stroke-width', String(s.weight === undefined ? 1 : s.weight));
      if (s.dash) { shape.setAttribute('stroke-dasharray', s.dash); }
      svg.appendChild(shape);
      return svg;
    }
    return {
      element: box,
      set: function (rows, lines) {
        while (body.firstChild) { body.removeChild(body.firstChild); }
        (rows || []).forEach(function (r) {
          var row = W.el('div', {'class': 'wangge-legend-row'}, swatch(r.swatch), W.el('span', {}, r.label));
          if (r.key !== undefined) { row.setAttribute('data-key', String(r.key)); }
          if (r.mode) { row.setAttribute('data-legend-mode', r.mode); }
          if (r.hidden) { row.style.display = 'none'; }
          body.appendChild(row);
        });
        (lines || []).forEach(function (line) {
          var div = W.el('div', {'class': line.note ? 'wangge-legend-note' : 'wangge-legend-line'}, line.text);
          if (line.id) { div.id = line.id; }
          if (line.hint) { div.title = line.hint; }
          body.appendChild(div);
        });
      }
    };
  }

  // A panel control (top left, under the zoom buttons) holding `content`; folds on a phone.
  function panel(map, title, content, id) {
    var box = W.el('div', {'class': 'wangge-ui wangge-panel', id: id});
    var head = W.el('button', {type: 'button', 'class': 'wangge-panel-head'}, title);
    box.appendChild(head);
    box.appendChild(content);
    if (window.matchMedia && window.matchMedia('(max-width: 700px)').matches) {
      box.classList.add('collapsed');
    }
    head.addEventListener('click', function () { box.classList.toggle('collapsed'); });
    var control = L.control({position: 'topleft'});
    control.onAdd = function () {
      L.DomEvent.disableClickPropagation(box);
      L.DomEvent.disableScrollPropagation(box);
      return box;
    };
    control.addTo(map);
    return box;
  }

  // A <select> of [value, text] options with `value` chosen.
  function select(id, options, value) {
    var s = W.el('select', {id: id});
    options.forEach(function (o) {
      var opt = W.el('option', {value: o[0]}, o[1]);
      if (String(o[0]) === String(value === null || value === undefined ? '' : value)) { opt.selected = true; }
      s.appendChild(opt);
    });
    return s;
  }

  // Mark the page: its first data is on the map (tests wait for it).
  function loaded() {
    document.documentElement.setAttribute('data-wangge-loaded', '1');
  }

  W.view = {bboxOf: bboxOf, withQuery: withQuery, byView: byView, table: table, legend: legend,
            panel: panel, select: select, loaded: loaded};
})();
