/* Data by URL for the map pages (grids, incidents, households, hot spots): load a layer for the
   map's view (GeoJSON) or as vector tiles, build popups and legends from text nodes, and say when
   the first data is on the map.
   Needs window.Wangge (maps/static/shell.js). */
(function () {
  'use strict';
  var W = window.Wangge;

  // Leaflet.VectorGrid calls L.DomEvent.fakeStop on a click on a canvas feature; Leaflet 1.8 dropped
  // it. Its old body: mark the event handled, so the map under the feature does not take the click too.
  if (window.L && L.DomEvent && !L.DomEvent.fakeStop) {
    L.DomEvent.fakeStop = function (e) { e._stopped = true; };
  }

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


  /* A vector tile layer (L.vectorGrid.protobuf, canvas renderer) of one of Wangge's layers
     (/tiles/{layer}/...). Point features are drawn on the canvas with `opts.style(properties)`, in the
     order `opts.rank(properties)` gives (highest on top); aggregate features (those with a `count`)
     are drawn as sized circles with their count (DOM, text nodes) that zoom in when clicked.
     `opts.onClick(properties, latlng)` for a point; `opts.onLoad()` after the visible tiles are in.
     Returns the layer with `.points()` (the point features of the current zoom's loaded tiles, each
     {properties, latlng}), `.aggregates()` ({count, latlng, element}) and `.setQuery(url)`. */
  function tiles(map, opts) {
    var pane = opts.pane || 'wangge-points';
    if (!map.getPane('wangge-aggregates')) { map.createPane('wangge-aggregates').style.zIndex = 460; }
    var byTile = {}, generation = 0, styles = {};
    var hidden = [];
    styles[opts.name] = function (p) { return p.count !== undefined ? hidden : opts.style(p); };
    var layer = L.vectorGrid.protobuf(opts.url, {
      rendererFactory: L.canvas.tile, pane: pane, interactive: true, vectorTileLayerStyles: styles,
      maxNativeZoom: opts.maxzoom, minZoom: opts.minzoom
    });
    // A point on a tile has no latlng: without this, Leaflet 1.9 takes a small circle for a marker and
    // asks its latlng on a click (TypeError); with it, the click's own position is used.
    var createLayer = layer._createLayer;
    layer._createLayer = function (feat, pxPerExtent) {
      var feature = createLayer.call(this, feat, pxPerExtent);
      if (feature.getLatLng) { feature.getLatLng = null; }
      return feature;
    };
    var aggregates = L.layerGroup().addTo(map);
    function aggregateMarker(count, latlng) {
      var size = Math.round(22 + 7 * Math.log(count + 1) / Math.LN10);
      var el = W.el('div', {'class': 'wangge-aggregate'}, String(count));
      el.setAttribute('data-count', String(count));
      el.setAttribute('style', 'width:' + size + 'px;height:' + size + 'px;line-height:' + size + 'px;' +
        'border-radius:50%;text-align:center;font:bold 12px sans-serif;color:#fff;' +
        'background:' + (opts.aggregateColour || 'rgba(44,123,182,0.85)') + ';border:2px solid #fff;' +
        'box-shadow:0 0 3px rgba(0,0,0,0.4);cursor:pointer');
      var marker = L.marker(latlng, {
        pane: 'wangge-aggregates', keyboard: false, title: opts.aggregateTitle ?
          opts.aggregateTitle.replace('{count}', String(count)) : '',
        icon: L.divIcon({html: el, className: 'wangge-aggregate-icon', iconSize: [size, size]})
      });
      marker.on('click', function () { map.setView(latlng, Math.min(map.getZoom() + 2, opts.pointZoom || 18)); });
      return {count: count, latlng: latlng, element: el, marker: marker};
    }
    var fetchTile = layer._getVectorTilePromise;
    layer._getVectorTilePromise = function (coords) {
      var mine = generation, key = this._tileCoordsToKey(coords), size = this.getTileSize();
      return fetchTile.call(this, coords).then(function (json) {
        var found = json.layers && json.layers[opts.name];
        var entry = {z: coords.z, points: [], aggregates: []};
        if (found && found.features) {
          if (opts.rank) {
            // Canvas paints in order: the most urgent last, so it stays on top where points crowd.
            found.features.sort(function (a, b) { return opts.rank(a.properties) - opts.rank(b.properties); });
          }
          var per = size.x / found.extent;
          found.features.forEach(function (f) {
            var g = f.geometry && f.geometry[0] && f.geometry[0][0];
            if (!g) { return; }
            var latlng = map.unproject(L.point(coords.x * size.x + g.x * per, coords.y * size.y + g.y * per),
                                       coords.z);
            if (f.properties.count !== undefined) {
              entry.aggregates.push(aggregateMarker(f.properties.count, latlng));
            } else {
              entry.points.push({properties: f.properties, latlng: latlng, tile: key});
            }
          });
        }
        if (mine === generation && layer._map) {
          if (byTile[key]) { byTile[key].aggregates.forEach(function (a) { aggregates.removeLayer(a.marker); }); }
          byTile[key] = entry;
          entry.aggregates.forEach(function (a) { aggregates.addLayer(a.marker); });
        }
        return json;
      });
    };
    layer.on('tileunload', function (e) {
      var key = layer._tileCoordsToKey(e.coords);
      if (byTile[key]) {
        byTile[key].aggregates.forEach(function (a) { aggregates.removeLayer(a.marker); });
        delete byTile[key];
      }
    });
    layer.on('click', function (e) {
      var p = e.layer && e.layer.properties;
      if (p && p.count === undefined && opts.onClick) { opts.onClick(p, e.latlng); }
    });
    layer.on('load', function () {
      // The tiles of the zoom before stay a moment (Leaflet prunes them after this): hide their counts now.
      var z = map.getZoom();
      Object.keys(byTile).forEach(function (k) {
        if (byTile[k].z !== z) { byTile[k].aggregates.forEach(function (a) { aggregates.removeLayer(a.marker); }); }
      });
      if (opts.onLoad) { opts.onLoad(); }
    });
    function current(kind) {
      var z = map.getZoom(), out = [];
      Object.keys(byTile).forEach(function (k) {
        if (byTile[k].z === z) { out = out.concat(byTile[k][kind]); }
      });
      return out;
    }
    layer.points = function () { return current('points'); };
    layer.aggregates = function () { return current('aggregates'); };
    layer.setQuery = function (url) {
      generation += 1;
      Object.keys(byTile).forEach(function (k) {
        byTile[k].aggregates.forEach(function (a) { aggregates.removeLayer(a.marker); });
      });
      byTile = {};
      layer.setUrl(url);
    };
    // What the loaded tiles hold inside the map's view: {count, points} (an aggregate counts where it is drawn).
    layer.inView = function () {
      var b = map.getBounds(), count = 0, points = [];
      layer.aggregates().forEach(function (a) { if (b.contains(a.latlng)) { count += a.count; } });
      layer.points().forEach(function (p) { if (b.contains(p.latlng)) { count += 1; points.push(p); } });
      return {count: count, points: points};
    };
    layer.addTo(map);
    return layer;
  }

  /* The grid outlines of the view (context under a page's points): villages, and group grids from
     cfg.group_outline_zoom, as GeoJSON from cfg.grids_url; `names` (code -> name) is filled as they come.
     Returns {layer, load, draw} for byView. */
  function gridOutlines(map, cfg, names) {
    map.createPane('wangge-outlines').style.zIndex = 410;
    map.getPane('wangge-outlines').style.pointerEvents = 'none';
    var layer = L.geoJSON(null, {
      pane: 'wangge-outlines', interactive: false,
      style: function (f) { return cfg.outline_styles[String(f.properties.level)]; }
    }).addTo(map);
    window.wanggeGridOutlines = layer;
    function load(bbox, zoom) {
      var levels = zoom >= cfg.group_outline_zoom ? [3, 4] : [3];
      return Promise.all(levels.map(function (level) {
        return W.api(withQuery(cfg.grids_url, {level: level, bbox: bbox, limit: cfg.limit}));
      }));
    }
    function draw(answers) {
      layer.clearLayers();
      answers.forEach(function (fc) {
        (fc.features || []).forEach(function (f) { names[f.properties.code] = f.properties.name; });
        layer.addData(fc);
      });
    }
    return {layer: layer, load: load, draw: draw};
  }

  // Mark the page: its first data is on the map (tests wait for it).
  function loaded() {
    document.documentElement.setAttribute('data-wangge-loaded', '1');
  }

  W.view = {bboxOf: bboxOf, withQuery: withQuery, byView: byView, table: table, legend: legend,
            panel: panel, select: select, loaded: loaded, tiles: tiles, gridOutlines: gridOutlines};
})();
