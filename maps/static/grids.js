/* The four-level grid map (/maps/grids): each level loaded for the view from the grid list
   (GeoJSON), a grid's card (staff, households) fetched when its popup opens. "查看历史": the grids as
   they were at an instant (Beijing time), by `as_of` on the grid list and the tiles; the page's URL keeps
   it (?as_of=…) so the view can be shared and reloaded. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    var levels = [1, 2, 3, 4];

    function pane(name, z) {
      map.createPane(name).style.zIndex = z;
      map.getPane(name).style.pointerEvents = 'none';   // only the paths themselves take clicks
    }
    pane('wangge-hillshade', 390);
    levels.forEach(function (l) { pane(cfg.fill_panes[l][0], cfg.fill_panes[l][1]); });
    [3, 2, 1].forEach(function (l) { pane(cfg.line_panes[l][0], cfg.line_panes[l][1]); });

    function staffList(staff) {
      if (!staff || !staff.length) { return t.none_recorded; }
      var box = W.el('div', {});
      staff.forEach(function (p) {
        var parts = [cfg.staff_roles[p.role] || p.role || t.blank];
        if (p.name) { parts.push(p.name); }
        if (p.phone) { parts.push(p.phone); }
        box.appendChild(W.el('div', {'class': 'wangge-staff'}, parts.join(' ')));
      });
      return box;
    }
    function card(code, box, popup, props) {
      if (asOf) {   // a past instant: the grid as it was (its staff and households are today's, not shown)
        while (box.firstChild) { box.removeChild(box.firstChild); }
        box.appendChild(V.table([
          [t.code, props.code], [t.name, props.name], [t.level, cfg.level_names[String(props.level)]],
          [t.parent, props.parent_code || null]
        ], t.blank, 'data-code', props.code));
        box.appendChild(W.el('div', {'class': 'wangge-grid-card-note'}, HISTORY.card_note));
        popup.update();
        return;
      }
      W.api(cfg.card_url.replace('{code}', encodeURIComponent(code))).then(function (c) {
        while (box.firstChild) { box.removeChild(box.firstChild); }
        var parent = c.parent_code ? (c.parent_name ? c.parent_name + '（' + c.parent_code + '）' : c.parent_code)
                                   : null;
        box.appendChild(V.table([
          [t.code, c.code], [t.name, c.name], [t.level, cfg.level_names[String(c.level)]],
          [t.parent, parent], [t.staff, staffList(c.staff)],
          [t.households, c.households === null ? null : c.households + ' ' + t.household_unit]
        ], t.blank, 'data-code', c.code));
        popup.update();
      }).catch(function (err) {
        while (box.firstChild) { box.removeChild(box.firstChild); }
        box.appendChild(W.el('div', {'class': 'wangge-popup-error'}, err.message || String(err)));
        popup.update();
      });
    }

    var layers = {}, groups = {}, overlays = {};
    levels.forEach(function (level) {
      var style = cfg.styles[level], highlight = cfg.highlights[level];
      var fill = L.geoJSON(null, {
        pane: cfg.fill_panes[level][0],
        style: function () { return style; },
        onEachFeature: function (feature, layer) {
          var tip = document.createElement('span');
          tip.textContent = feature.properties.name;
          layer.bindTooltip(tip, {sticky: true, className: 'wangge-tooltip'});
          var popup = L.popup({maxWidth: 380, className: 'wangge-popup'});
          layer.bindPopup(popup);
          layer.on('popupopen', function () {
            var box = W.el('div', {'class': 'wangge-grid-card'}, t.loading);
            popup.setContent(box);
            card(feature.properties.code, box, popup, feature.properties);
          });
          layer.on('mouseover', function () { layer.setStyle(highlight); });
          layer.on('mouseout', function () { fill.resetStyle(layer); });
        }
      });
      var group = L.layerGroup([fill]);
      if (cfg.line_panes[level]) {
        // Coarse boundaries drawn again above the finer levels, not taking clicks.
        group.addLayer(L.geoJSON(null, {pane: cfg.line_panes[level][0], interactive: false,
                                        style: function () { return cfg.outline_styles[level]; }}));
      }
      group.addTo(map);
      layers[level] = fill;
      groups[level] = group;
      overlays[cfg.level_names[String(level)]] = group;
    });
    window.wanggeLayers = layers;
    window.wanggeGroups = groups;
    window.wanggeFindGrid = function (code) {
      var found = null;
      levels.forEach(function (level) {
        layers[level].eachLayer(function (l) {
          if (l.feature && l.feature.properties.code === String(code)) { found = l; }
        });
      });
      return found;
    };

    if (cfg.hillshade) {
      var hs = L.imageOverlay(cfg.hillshade.url, cfg.hillshade.bounds, {
        opacity: 0.55, interactive: false, className: 'wangge-hillshade', pane: 'wangge-hillshade'
      }).addTo(map);
      overlays[t.hillshade] = hs;
      window.wanggeHillshade = hs;
    }
    var collapsed = !!(window.matchMedia && window.matchMedia('(max-width: 700px)').matches);
    L.control.layers(null, overlays, {collapsed: collapsed, position: 'topright'}).addTo(map);

    var legend = V.legend(map, t.legend_title);
    var rows = levels.map(function (level) {
      var s = cfg.styles[level], o = cfg.outline_styles[level] || s;
      return level === 4
        ? {key: level, label: cfg.level_names['4'], swatch: {fill: s.fillColor, color: s.color, weight: 1,
                                                            opacity: s.fillOpacity}}
        : {key: level, label: cfg.level_names[String(level)], swatch: {line: true, color: o.color,
                                                                      weight: o.weight, dash: o.dashArray}};
    });
    if (cfg.hillshade) {
      rows.push({key: 'hillshade', label: t.legend_hillshade, swatch: {fill: '#999', color: '#999', opacity: 0.5}});
    }
    legend.set(rows, cfg.synthetic_note ? [{id: 'wangge-legend-note', note: true, text: cfg.synthetic_note}] : []);

    // --- 查看历史: the instant shown (an ISO 8601 string with its offset), null for now -------------------
    var HISTORY = {title: '查看历史', at: '时刻（北京时间）', now: '现在', shown: '显示 {at} 时的网格',
                   card_note: '这是该时刻的网格；网格人员和住户只按现在的网格显示。'};
    var asOf = new URLSearchParams(window.location.search).get('as_of') || null;
    // Only an instant with its offset (what this page writes); anything else shows today's grids.
    if (asOf !== null && (!/(Z|[+-]\d\d:\d\d)$/.test(asOf) || isNaN(new Date(asOf).getTime()))) { asOf = null; }
    var parts = new Intl.DateTimeFormat('en-CA', {timeZone: 'Asia/Shanghai', year: 'numeric', month: '2-digit',
      day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23'});
    function localValue(iso) {     // the instant as a datetime-local value in Beijing time
      var p = {};
      parts.formatToParts(new Date(iso)).forEach(function (x) { p[x.type] = x.value; });
      return p.year + '-' + p.month + '-' + p.day + 'T' + p.hour + ':' + p.minute + ':' + p.second;
    }
    // Beijing time as typed (datetime-local has no zone).
    function instant(local) { return local ? (local.length === 16 ? local + ':00' : local) + '+08:00' : null; }
    function tilesUrl() {
      return asOf ? V.withQuery(cfg.tiles.url, {as_of: asOf}) : cfg.tiles.url;
    }
    var historyBox = W.el('div', {'class': 'wangge-panel wangge-grid-history', id: 'wangge-grid-history'});
    var atInput = W.el('input', {id: 'wangge-as-of', type: 'datetime-local', step: '1'});
    var nowButton = W.el('button', {type: 'button', id: 'wangge-as-of-now'}, HISTORY.now);
    var banner = W.el('div', {id: 'wangge-as-of-banner', role: 'status', 'class': 'wangge-legend-note'});
    // The head folds the panel (on a phone it starts folded unless a past instant is shown).
    historyBox.appendChild(W.el('button', {type: 'button', 'class': 'wangge-panel-head', id: 'wangge-as-of-head',
      onclick: function () { historyBox.classList.toggle('collapsed'); }}, HISTORY.title));
    if (!asOf && window.matchMedia && window.matchMedia('(max-width: 700px)').matches) {
      historyBox.classList.add('collapsed');
    }
    historyBox.appendChild(W.el('label', {'for': 'wangge-as-of', 'class': 'wangge-legend-line'}, HISTORY.at));
    historyBox.appendChild(W.el('div', {}, atInput, ' ', nowButton));
    historyBox.appendChild(banner);
    atInput.style.maxWidth = '190px';
    atInput.style.fontSize = '13px';
    var HistoryControl = L.Control.extend({options: {position: 'bottomleft'}, onAdd: function () {
      L.DomEvent.disableClickPropagation(historyBox);
      L.DomEvent.disableScrollPropagation(historyBox);
      return historyBox;
    }});
    new HistoryControl().addTo(map);
    function showAsOf() {
      banner.textContent = asOf ? HISTORY.shown.replace('{at}', W.time(asOf)) : '';
      banner.hidden = !asOf;
      atInput.value = asOf ? localValue(asOf) : '';
      document.documentElement.dataset.wanggeAsOf = asOf || '';
      // The URL is touched only when the instant changes (a page just opened keeps its own URL).
      var url = new URL(window.location.href);
      if (url.searchParams.get('as_of') !== asOf) {
        if (asOf) { url.searchParams.set('as_of', asOf); } else { url.searchParams.delete('as_of'); }
        window.history.replaceState(null, '', url.pathname + url.search + url.hash);
      }
    }
    function setAsOf(value) {
      asOf = value;
      showAsOf();
      if (tiles) { tiles.setUrl(tilesUrl()); }
      document.documentElement.dataset.wanggeLoaded = '0';
      W.clearError();
      return loader.reload();
    }
    atInput.addEventListener('change', function () {
      var value = instant(atInput.value);
      if (value === asOf) { return; }
      setAsOf(value);
    });
    nowButton.addEventListener('click', function () { setAsOf(null); });
    window.wanggeGridTilesUrl = tilesUrl;

    function load(bbox, zoom) {
      return Promise.all(levels.map(function (level) {
        if (zoom < cfg.min_zoom[level]) { return Promise.resolve(null); }
        return W.api(V.withQuery(cfg.grids_url, {level: level, bbox: bbox, limit: cfg.limit, as_of: asOf}));
      }));
    }
    /* Where the group grids in view are more than one answer holds (a city, not a town), they are
       drawn from the vector tiles (/tiles/grids, built by PostGIS) instead: every one, no cut. */
    var tiles = null;
    function groupTiles() {
      if (tiles || !cfg.tiles || !L.vectorGrid) { return tiles; }
      var style = cfg.styles[4], hidden = {weight: 0, opacity: 0, fill: false, fillOpacity: 0};
      tiles = L.vectorGrid.protobuf(tilesUrl(), {
        rendererFactory: L.canvas.tile, pane: cfg.fill_panes[4][0], interactive: true,
        minZoom: cfg.min_zoom[4], maxNativeZoom: cfg.tiles.maxzoom,
        vectorTileLayerStyles: {grids: function (p) {
          return p.level === 4 ? Object.assign({fill: true}, style) : hidden;
        }},
        getFeatureId: function (f) { return f.properties.code; }
      });
      tiles.on('click', function (e) {
        var p = e.layer && e.layer.properties;
        if (!p || p.level !== 4) { return; }
        var box = W.el('div', {'class': 'wangge-grid-card'}, t.loading);
        var popup = L.popup({maxWidth: 380, className: 'wangge-popup'}).setLatLng(e.latlng).setContent(box)
          .openOn(map);
        card(p.code, box, popup, p);
      });
      window.wanggeGridTiles = tiles;
      return tiles;
    }
    function draw(answers) {
      var cut = false;
      answers.forEach(function (fc, i) {
        var level = levels[i];
        layers[level].clearLayers();
        var group = groups[level];
        group.eachLayer(function (l) { if (l !== layers[level] && l !== tiles) { l.clearLayers(); } });
        if (!fc) { return; }
        if (level === 4 && fc.numberMatched > fc.numberReturned && groupTiles()) {
          if (!group.hasLayer(tiles)) { group.addLayer(tiles); }
          return;
        }
        if (level === 4 && tiles && group.hasLayer(tiles)) { group.removeLayer(tiles); }
        layers[level].addData(fc);
        group.eachLayer(function (l) { if (l !== layers[level] && l !== tiles) { l.addData(fc); } });
        if (fc.numberMatched > fc.numberReturned) { cut = true; }
      });
      var zoomNote = document.getElementById('wangge-grid-zoom-note');
      if (zoomNote) { zoomNote.style.display = (cut || answers[3] === null) ? '' : 'none'; }
      V.loaded();
    }
    legend.element.querySelector('.wangge-legend-body').appendChild(
      W.el('div', {'class': 'wangge-legend-note', id: 'wangge-grid-zoom-note'}, t.zoom_in));

    if (cfg.bounds) { map.fitBounds(cfg.bounds, {padding: [20, 20], animate: false}); }
    var loader = V.byView(map, load, draw, {complete: function (answers) {
      return answers.every(function (fc) { return fc && fc.numberMatched <= fc.numberReturned; });
    }});
    showAsOf();
    loader.reload();
  });
})();
