/* The command center (/maps/command): grids and incidents as vector tiles, the numbers of the view,
   search, filters, optional layers fetched when switched on, and live incidents. Everything shown comes
   by URL and is put into the page as text nodes (Wangge.el), never as markup. */
(function () {
  'use strict';

  var W = window.Wangge;
  var cfg = W.config;
  var urls = cfg.urls || {};
  var can = cfg.can || {};
  var colours = cfg.state_colours || {};
  var levelStyles = cfg.level_styles || {};
  var root = document.documentElement;
  var el = W.el;

  var STATES = ['visit', 'report', 'study', 'handle', 'follow_up', 'closed'];
  var CATEGORIES = Object.keys((cfg.names || {}).category || {});
  var PHONE = window.matchMedia && window.matchMedia('(max-width: 640px)').matches;

  function byId(id) { return document.getElementById(id); }

  /* --- the panel: search, filters, numbers --------------------------------------------------- */

  function option(value, label, selected) {
    return el('option', {value: value, selected: !!selected}, label);
  }

  function buildPanel() {
    var states = [option('', '全部环节', true)].concat(STATES.map(function (s) { return option(s, W.name('state', s)); }));
    var categories = [option('', '全部类别', true)].concat(
      CATEGORIES.map(function (c) { return option(c, W.name('category', c)); }));
    var windows = (cfg.time_windows || []).map(function (w, i) {
      return option(w.days === null ? '' : String(w.days), w.label, i === 0);
    });
    var panel = el('aside', {id: 'command-panel', 'class': 'command-panel' + (PHONE ? ' collapsed' : ''),
      'aria-label': '指挥中心面板'},
      el('div', {'class': 'command-panel-head'},
        el('form', {id: 'command-search', 'class': 'command-search', role: 'search'},
          el('input', {id: 'command-search-input', type: 'search', maxlength: '50', autocomplete: 'off',
            placeholder: '搜索网格、村、户号、事项编号', 'aria-label': '搜索'}),
          el('button', {type: 'submit', id: 'command-search-button'}, '搜索')),
        el('button', {type: 'button', id: 'command-panel-toggle', 'class': 'command-panel-toggle',
          'aria-expanded': PHONE ? 'false' : 'true', 'aria-controls': 'command-panel-body'},
          PHONE ? '数据 ▲' : '收起')),
      el('ul', {id: 'command-search-results', 'class': 'command-search-results', hidden: true}),
      el('div', {id: 'command-panel-body', 'class': 'command-panel-body'},
        el('section', {id: 'command-filters', 'class': 'command-filters'},
          el('h2', null, '筛选'),
          el('label', null, '环节', el('select', {id: 'filter-state'}, states)),
          el('label', null, '类别', el('select', {id: 'filter-category'}, categories)),
          el('label', null, '时间', el('select', {id: 'filter-window'}, windows)),
          el('label', {'class': 'check'}, el('input', {type: 'checkbox', id: 'filter-overdue'}), '只看超期'),
          el('label', {'class': 'check'}, el('input', {type: 'checkbox', id: 'filter-flagged'}), '只看待核'),
          el('label', {'class': 'check'}, el('input', {type: 'checkbox', id: 'filter-closed'}), '含已办结')),
        el('section', {id: 'command-numbers', 'class': 'command-numbers', 'aria-live': 'polite'},
          el('h2', null, '当前视野内', el('small', {id: 'num-as-of'})),
          el('div', {'class': 'command-tiles'},
            tile('num-total', '事件'), tile('num-open', '未办结'), tile('num-overdue', '超期', 'warn'),
            tile('num-flagged', '待核'), tile('num-today', '今日新增')),
          el('h3', null, '按类别'), el('ul', {id: 'num-by-category', 'class': 'command-bars'}),
          el('h3', null, '按环节'), el('ul', {id: 'num-by-state', 'class': 'command-bars'}),
          el('div', {id: 'num-by-level'})),
        el('section', {'class': 'command-legend', id: 'command-legend'},
          el('h2', null, '图例'),
          el('ul', null, STATES.map(function (s) {
            return el('li', null, el('span', {'class': 'dot', style: 'background:' + (colours[s] || '#999')}),
              W.name('state', s));
          }), el('li', null, el('span', {'class': 'dot ring-red'}), '超期（红圈）'),
          el('li', null, el('span', {'class': 'dot ring-black'}), '待核（黑圈）'),
          el('li', null, el('span', {'class': 'dot cluster'}), '聚合：数字为事件数')))));
    document.body.appendChild(panel);
    document.body.classList.add('command-page');
    byId('command-panel-toggle').addEventListener('click', function () {
      var collapsed = panel.classList.toggle('collapsed');
      this.setAttribute('aria-expanded', collapsed ? 'false' : 'true');
      this.textContent = collapsed ? (PHONE ? '数据 ▲' : '展开') : (PHONE ? '收起 ▼' : '收起');
      setTimeout(function () { map.invalidateSize(); }, 50);
    });
  }

  function tile(id, label, kind) {
    return el('div', {'class': 'command-number' + (kind ? ' ' + kind : '')},
      el('span', {'class': 'value', id: id}, '–'), el('span', {'class': 'label'}, label));
  }

  /* --- filters ------------------------------------------------------------------------------- */

  function beijingMidnightIso(daysBack) {
    var now = new Date(Date.now() + 8 * 3600 * 1000);   // Beijing wall clock, read in UTC
    var day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) - daysBack * 86400000;
    var d = new Date(day);
    function two(n) { return (n < 10 ? '0' : '') + n; }
    return d.getUTCFullYear() + '-' + two(d.getUTCMonth() + 1) + '-' + two(d.getUTCDate()) + 'T00:00:00+08:00';
  }

  function filterParams() {
    var p = new URLSearchParams();
    var state = byId('filter-state').value;
    var category = byId('filter-category').value;
    var days = byId('filter-window').value;
    if (state) { p.set('state', state); }
    if (category) { p.set('category', category); }
    if (days !== '') { p.set('since', beijingMidnightIso(parseInt(days, 10))); }
    if (byId('filter-overdue').checked) { p.set('overdue', 'true'); }
    if (byId('filter-flagged').checked) { p.set('flagged', 'true'); }
    if (byId('filter-closed').checked) { p.set('open', 'false'); }
    return p;
  }

  function matchesFilters(e) {
    var p = filterParams();
    if (p.get('state') && e.state !== p.get('state')) { return false; }
    if (!p.get('state') && p.get('open') !== 'false' && e.state === 'closed') { return false; }
    if (p.get('category') && e.category !== p.get('category')) { return false; }
    if (p.get('overdue') && !e.overdue) { return false; }
    if (p.get('flagged') && !e.flagged) { return false; }
    return true;
  }

  /* --- numbers of the view ------------------------------------------------------------------- */

  var summaryTimer = null;
  var summaryAbort = null;
  var summarySeq = 0;

  function viewBbox() {
    var b = map.getBounds();
    function r(v) { return Math.round(v * 1e6) / 1e6; }
    return [r(Math.max(-180, b.getWest())), r(Math.max(-90, b.getSouth())),
      r(Math.min(180, b.getEast())), r(Math.min(90, b.getNorth()))].join(',');
  }

  function scheduleSummary(delay) {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(loadSummary, delay === undefined ? 250 : delay);
  }

  function loadSummary() {
    if (summaryAbort) { summaryAbort.abort(); }
    summaryAbort = window.AbortController ? new AbortController() : null;
    var p = filterParams();
    p.set('bbox', viewBbox());
    var seq = ++summarySeq;
    return W.api(urls.summary + '?' + p.toString(), {signal: summaryAbort ? summaryAbort.signal : undefined})
      .then(function (s) {
        if (seq !== summarySeq) { return; }
        showSummary(s);
        root.dataset.summarySeq = String(seq);
        root.dataset.summaryQuery = p.toString();
        markReady();
      }, W.showError);
  }

  function bars(listId, counts, kind) {
    var list = byId(listId);
    list.textContent = '';
    var entries = Object.keys(counts).map(function (k) { return [k, counts[k]]; })
      .sort(function (a, b) { return b[1] - a[1]; });
    var most = entries.length ? entries[0][1] : 1;
    entries.forEach(function (e) {
      list.appendChild(el('li', {dataset: {code: e[0]}},
        el('span', {'class': 'name'}, W.name(kind, e[0])),
        el('span', {'class': 'bar', style: 'width:' + Math.max(2, Math.round(100 * e[1] / most)) + '%'}),
        el('span', {'class': 'count'}, String(e[1]))));
    });
    if (!entries.length) { list.appendChild(el('li', {'class': 'empty'}, '无')); }
  }

  function showSummary(s) {
    byId('num-total').textContent = String(s.total);
    byId('num-open').textContent = String(s.open);
    byId('num-overdue').textContent = String(s.overdue);
    byId('num-flagged').textContent = String(s.flagged);
    byId('num-today').textContent = String(s.today_new);
    byId('num-as-of').textContent = ' ' + W.time(s.as_of);
    bars('num-by-category', s.by_category, 'category');
    bars('num-by-state', s.by_state, 'state');
    var levels = byId('num-by-level');
    levels.textContent = '';
    (s.by_level || []).filter(function (l) { return l.level === 3 || l.level === 2; }).forEach(function (l) {
      levels.appendChild(el('h3', null, '按' + l.level_name.replace(/（.*）/, '') + '（前' + l.top.length + '，共'
        + l.grids + '）'));
      levels.appendChild(el('ol', {'class': 'command-top', dataset: {level: l.level}}, l.top.map(function (g) {
        return el('li', {dataset: {code: g.code}}, el('span', {'class': 'name'}, g.name),
          el('span', {'class': 'count'}, String(g.count)));
      })));
    });
  }

  var ready = false;
  function markReady() {
    if (ready) { return; }
    ready = true;
    root.dataset.commandReady = '1';
  }

  /* --- vector tile layers -------------------------------------------------------------------- */

  var gridLayer = null;
  var incidentLayer = null;
  var tileInfo = {};

  function tileUrl(layer, params) {
    var info = tileInfo[layer] || {};
    var template = info.url || info.tiles || urls.tiles.replace('{layer}', layer);
    if (Array.isArray(template)) { template = template[0]; }
    var query = params ? params.toString() : '';
    return template + (query ? (template.indexOf('?') >= 0 ? '&' : '?') + query : '');
  }

  function incidentStyle(p) {
    if (p.count !== undefined && p.count !== null) {
      var n = Number(p.count) || 0;
      return {radius: Math.min(22, 5 + Math.sqrt(n) * 1.6), fill: true, fillOpacity: 0.75,
        fillColor: (Number(p.overdue) || 0) > 0 ? '#de2d26' : '#3182bd', color: '#fff', weight: 1.5};
    }
    var overdue = p.overdue === true || p.overdue === 'true' || p.overdue === 1;
    var flagged = p.flagged === true || p.flagged === 'true' || p.flagged === 1;
    return {radius: 6, fill: true, fillOpacity: 0.9, fillColor: colours[p.state] || '#777',
      color: flagged ? '#000' : (overdue ? '#de2d26' : '#fff'), weight: overdue || flagged ? 3 : 1};
  }

  function makeTileLayers() {
    if (!L.vectorGrid || !can.tiles) { return; }
    var layers = ['grids', 'incidents'];
    var gridOptions = {
      rendererFactory: L.canvas.tile, pane: 'grids', interactive: false,
      vectorTileLayerStyles: {grids: function (p) {
        var s = levelStyles[String(p.level)] || {color: '#555', weight: 1};
        return {color: s.color, weight: s.weight, fill: false, opacity: 0.9};
      }}
    };
    var info = tileInfo.grids || {};
    if (info.maxzoom) { gridOptions.maxNativeZoom = info.maxzoom; }
    if (info.minzoom) { gridOptions.minZoom = info.minzoom; }
    gridLayer = L.vectorGrid.protobuf(tileUrl('grids'), gridOptions);
    var incOptions = {
      rendererFactory: L.canvas.tile, pane: 'incidents', interactive: true,
      getFeatureId: function (f) { return f.properties.id; },
      vectorTileLayerStyles: {incidents: incidentStyle}
    };
    info = tileInfo.incidents || {};
    if (info.maxzoom) { incOptions.maxNativeZoom = info.maxzoom; }
    if (info.minzoom) { incOptions.minZoom = info.minzoom; }
    incidentLayer = L.vectorGrid.protobuf(tileUrl('incidents', filterParams()), incOptions);
    incidentLayer.on('click', function (e) {
      var p = (e.layer && e.layer.properties) || {};
      if (p.count !== undefined && p.count !== null) {
        map.setView(e.latlng, Math.min(map.getZoom() + 2, map.getMaxZoom()));
        return;
      }
      L.popup().setLatLng(e.latlng).setContent(incidentPopup(p)).openOn(map);
    });
    gridLayer.addTo(map);
    incidentLayer.addTo(map);
    overlays['网格（四级）'] = gridLayer;
    overlays['事件'] = incidentLayer;
    window.commandLayers = {grids: gridLayer, incidents: incidentLayer, layers: layers};
  }

  function incidentPopup(p) {
    var overdue = p.overdue === true || p.overdue === 'true' || p.overdue === 1;
    var flagged = p.flagged === true || p.flagged === 'true' || p.flagged === 1;
    return el('div', {'class': 'command-popup'},
      el('strong', null, '事项 #' + p.id),
      el('div', null, W.name('category', p.category) + ' · ' + W.name('state', p.state)),
      overdue ? el('div', {'class': 'warn'}, '已超期') : null,
      flagged ? el('div', null, '待核（位置需复核）') : null,
      el('a', {href: '/pages/incidents/' + encodeURIComponent(p.id)}, '查看详情与处置'));
  }

  function refilter() {
    if (incidentLayer) { incidentLayer.setUrl(tileUrl('incidents', filterParams())); }
    liveLayer.clearLayers();
    liveMarkers = {};
    scheduleSummary(0);
  }

  /* --- layers fetched when switched on --------------------------------------------------------- */

  var overlays = {};
  var RISK_COLOURS = {'高': '#b30000', '较高': '#e34a33', '中': '#fc8d59', '低': '#fdcc8a', '无': '#f7f7f7'};
  var BIN_COLOURS = {'3': '#b2182b', '2': '#d6604d', '1': '#f4a582', '0': null, '-1': '#92c5de', '-2': '#4393c3',
    '-3': '#2166ac'};

  function lazyLayer(label, load) {
    var group = L.layerGroup();
    var loaded = false;
    group.on('add', function () {
      if (loaded) { return; }
      loaded = true;
      load(group).catch(function (err) { loaded = false; W.showError(err); });
    });
    overlays[label] = group;
    return group;
  }

  function hotspots(group) {
    return W.api(urls.hotspots).then(function (fc) {
      L.geoJSON(fc, {
        pane: 'areas',
        filter: function (f) { return !!BIN_COLOURS[String(f.properties.bin)]; },
        style: function (f) {
          return {color: '#555', weight: 0.5, fillColor: BIN_COLOURS[String(f.properties.bin)], fillOpacity: 0.55};
        },
        onEachFeature: function (f, layer) {
          var hot = f.properties.bin > 0;
          layer.bindTooltip(el('span', null, (f.properties.name || f.properties.unit_id) + '：' +
            (hot ? '矛盾纠纷明显偏多（热点）' : '明显偏少（冷点）') + '，共 ' + f.properties.incidents + ' 件'));
        }
      }).addTo(group);
    });
  }

  function floodRisk(group) {
    return Promise.all([W.api(urls.flood_risk), W.api(urls.grids)]).then(function (both) {
      var risk = {};
      both[0].grids.forEach(function (g) { risk[g.code] = g; });
      L.geoJSON(both[1], {
        pane: 'areas',
        style: function (f) {
          var r = risk[f.properties.code];
          return {color: '#777', weight: 0.6, fillColor: RISK_COLOURS[r ? r.risk_class : '无'], fillOpacity: 0.5};
        },
        onEachFeature: function (f, layer) {
          var r = risk[f.properties.code];
          layer.bindTooltip(el('span', null, f.properties.name + '：洪涝风险' + (r ? r.risk_class : '无')));
        }
      }).addTo(group);
    });
  }

  function shelters(group) {
    return W.api(urls.shelters).then(function (fc) {
      L.geoJSON(fc, {
        pointToLayer: function (f, latlng) {
          return L.circleMarker(latlng, {radius: 7, color: '#fff', weight: 2, fillColor: '#238b45', fillOpacity: 1,
            pane: 'incidents'});
        },
        onEachFeature: function (f, layer) {
          layer.bindTooltip(el('span', null, '安置点：' + f.properties.name + '（可容纳 ' + f.properties.capacity + ' 人）'));
        }
      }).addTo(group);
    });
  }

  function emergency(group) {
    return W.api(urls.emergencies).then(function (list) {
      var active = (list || []).filter(function (e) { return e.active; });
      if (!active.length) { W.notice('当前没有启动中的应急响应。'); return null; }
      var shapes = L.geoJSON(null, {pane: 'areas', style: {color: '#08519c', weight: 2, fillColor: '#6baed6',
        fillOpacity: 0.35}});
      active.forEach(function (e) {
        shapes.addData({type: 'Feature', geometry: e.extent, properties: {title: e.title}});
      });
      shapes.eachLayer(function (layer) { layer.bindTooltip(el('span', null, '应急：' + layer.feature.properties.title)); });
      shapes.addTo(group);
      if (!can.households) { return null; }
      var b = shapes.getBounds();
      var bbox = [b.getWest(), b.getSouth(), b.getEast(), b.getNorth()].join(',');
      return W.api(urls.households + '&bbox=' + encodeURIComponent(bbox)).then(function (fc) {
        L.geoJSON(fc, {
          filter: function (f) { return f.properties.personal_fields === 'shown'; },
          pointToLayer: function (f, latlng) {
            return L.circleMarker(latlng, {radius: 4, color: '#fff', weight: 1, fillColor: '#cb181d', fillOpacity: 0.9,
              pane: 'incidents'});
          },
          onEachFeature: function (f, layer) {
            var p = f.properties;
            layer.bindPopup(el('div', null, el('strong', null, '户 ' + p.household_no),
              el('div', null, p.address || ''), el('div', null, '户主 ' + (p.head_name || '') + ' ' + (p.phone || '')),
              el('div', null, '共 ' + p.residents + ' 人，老人 ' + p.elderly + '，卧床 ' + p.bedridden)));
          }
        }).addTo(group);
      });
    });
  }

  /* --- search ------------------------------------------------------------------------------- */

  function flyTo(hit) {
    var target = hit.kind + ':' + (hit.code || hit.id);
    map.once('moveend', function () { root.dataset.commandFlown = target; });
    if (hit.bbox) {
      map.flyToBounds([[hit.bbox[1], hit.bbox[0]], [hit.bbox[3], hit.bbox[2]]], {padding: [20, 20], duration: 0.8});
    } else if (hit.point) {
      map.flyTo([hit.point[1], hit.point[0]], Math.max(map.getZoom(), 17), {duration: 0.8});
    }
  }

  function search(event) {
    event.preventDefault();
    var q = byId('command-search-input').value.trim();
    var list = byId('command-search-results');
    if (!q) { list.hidden = true; return; }
    W.api(urls.search + '?' + new URLSearchParams({q: q, limit: '10'}).toString()).then(function (answer) {
      list.textContent = '';
      if (!answer.hits.length) {
        list.appendChild(el('li', {'class': 'empty'}, '没有找到“' + q + '”'));
      }
      answer.hits.forEach(function (hit, i) {
        list.appendChild(el('li', null, el('button', {type: 'button', 'class': 'hit', dataset: {kind: hit.kind},
          onclick: function () { flyTo(hit); if (PHONE) { list.hidden = true; } }}, hit.label)));
        if (i === 0) { flyTo(hit); }
      });
      list.hidden = false;
    }, W.showError);
  }

  /* --- live incidents ------------------------------------------------------------------------ */

  var liveLayer = L.layerGroup();
  var liveMarkers = {};
  var redrawTimer = null;

  function onLive(e) {
    if (!e) { return; }
    if (e.kind === 'bulk') {
      if (incidentLayer) { incidentLayer.redraw(); }
      scheduleSummary(100);
      return;
    }
    var marker = liveMarkers[e.id];
    if (matchesFilters(e) && e.lat !== undefined && e.lon !== undefined) {
      var style = incidentStyle(e);
      style.pane = 'live';
      if (marker) { marker.setStyle(style); }
      else {
        marker = L.circleMarker([e.lat, e.lon], style).addTo(liveLayer);
        marker.bindPopup(function () { return incidentPopup(e); });
        liveMarkers[e.id] = marker;
      }
    } else if (marker) {
      liveLayer.removeLayer(marker);
      delete liveMarkers[e.id];
    }
    root.dataset.liveLast = String(e.id);
    scheduleSummary(150);
    // The tiles catch up (their ETag changed with the write) a little later, in one redraw.
    clearTimeout(redrawTimer);
    redrawTimer = setTimeout(function () { if (incidentLayer) { incidentLayer.redraw(); } }, 3000);
  }

  function startLive() {
    if (!can.live || typeof W.live !== 'function') { return; }
    W.live(urls.events, onLive, {onStatus: function (state) { root.dataset.liveStatus = state; }});
  }

  /* --- start ---------------------------------------------------------------------------------- */

  var map = null;

  W.ready(function () {
    map = W.map || window.wanggeMap;
    buildPanel();
    liveLayer.addTo(map);
    window.commandLive = liveMarkers;
    window.commandLiveLayer = liveLayer;
    if (cfg.town_bbox) {
      var t = cfg.town_bbox;
      map.fitBounds([[t[1], t[0]], [t[3], t[2]]], {animate: false});
    }
    byId('command-search').addEventListener('submit', search);
    ['filter-state', 'filter-category', 'filter-window', 'filter-overdue', 'filter-flagged', 'filter-closed']
      .forEach(function (id) { byId(id).addEventListener('change', refilter); });
    map.on('moveend', function () { scheduleSummary(); });
    var layersLoaded = can.tiles ? W.api(urls.tile_layers).then(function (info) {
      (Array.isArray(info) ? info : (info.layers || [])).forEach(function (l) { tileInfo[l.name || l.id] = l; });
      if (!Array.isArray(info) && !info.layers) {
        Object.keys(info || {}).forEach(function (k) { if (info[k] && typeof info[k] === 'object') { tileInfo[k] = info[k]; } });
      }
    }, function (err) { W.showError(err); }) : Promise.resolve();
    layersLoaded.then(function () {
      makeTileLayers();
      overlays['新上报（实时）'] = liveLayer;
      if (can.incidents_hotspots !== false) { lazyLayer('矛盾热点', hotspots); }
      if (can.flood_risk) { lazyLayer('洪涝风险（行政村）', floodRisk); }
      if (can.shelters) { lazyLayer('安置点', shelters); }
      if (can.emergencies) { lazyLayer('应急范围与住户', emergency); }
      L.control.layers(null, overlays, {collapsed: true, position: 'topright'}).addTo(map);
      window.commandOverlays = overlays;
      startLive();
      loadSummary();
    });
  });
})();
