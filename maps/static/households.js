/* The household map (/maps/households): the households the viewer may see, loaded for the view
   from the household list (GeoJSON; personal fields masked there as the role requires, every
   unmasked read audited there), coloured by who needs help first. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    var gridNames = {};

    map.createPane('wangge-outlines').style.zIndex = 410;
    map.getPane('wangge-outlines').style.pointerEvents = 'none';
    map.createPane('wangge-points').style.zIndex = 450;
    var renderer = L.canvas({padding: 0.5, pane: 'wangge-points'});

    var outlines = L.geoJSON(null, {
      pane: 'wangge-outlines', interactive: false,
      style: function (f) { return cfg.outline_styles[String(f.properties.level)]; }
    }).addTo(map);
    window.wanggeGridOutlines = outlines;
    function loadOutlines(bbox, zoom) {
      var levels = zoom >= cfg.group_outline_zoom ? [3, 4] : [3];
      return Promise.all(levels.map(function (level) {
        return W.api(V.withQuery(cfg.grids_url, {level: level, bbox: bbox, limit: cfg.limit}));
      }));
    }
    function drawOutlines(answers) {
      outlines.clearLayers();
      answers.forEach(function (fc) {
        (fc.features || []).forEach(function (f) { gridNames[f.properties.code] = f.properties.name; });
        outlines.addData(fc);
      });
    }

    function vulnerability(p) {
      if ((p.bedridden || 0) > 0 || (p.disabled || 0) > 0) { return 'carry'; }
      if ((p.elderly || 0) > 0 || (p.pregnant || 0) > 0) { return 'assist'; }
      return 'other';
    }
    function popupContent(feature) {
      var p = feature.properties;
      var grid = p.grid_name && p.grid_code ? p.grid_name + '（' + p.grid_code + '）' : (p.grid_name || p.grid_code);
      var values = Object.assign({}, p, {grid: grid});
      return V.table(cfg.fields.map(function (f) { return [f[1], values[f[0]]]; }), t.blank,
                     'data-household-no', p.household_no);
    }
    var households = L.geoJSON(null, {
      pane: 'wangge-points',
      pointToLayer: function (feature, latlng) {
        var style = cfg.styles[vulnerability(feature.properties)];
        return L.circleMarker(latlng, Object.assign({renderer: renderer, pane: 'wangge-points'}, style));
      },
      onEachFeature: function (feature, layer) {
        layer.bindPopup(function () { return popupContent(feature); },
                        {maxWidth: 340, className: 'wangge-popup'});
      }
    }).addTo(map);
    window.wanggeHouseholds = households;

    var legend = V.legend(map, t.legend_title);
    function draw(fc) {
      households.clearLayers();
      var rank = {other: 0, assist: 1, carry: 2};
      // The most urgent class last: drawn on top where houses crowd.
      var features = fc.features.slice().sort(function (a, b) {
        return rank[vulnerability(a.properties)] - rank[vulnerability(b.properties)];
      });
      households.addData({type: 'FeatureCollection', features: features});
      var shown = features.length, total = fc.numberMatched;
      var rows = ['carry', 'assist', 'other'].map(function (k) {
        var s = cfg.styles[k];
        return {key: k, label: cfg.classes[k], swatch: {fill: s.fillColor, color: s.color, weight: s.weight,
                                                       radius: s.radius, opacity: s.fillOpacity}};
      });
      rows.push({key: 'outline', label: t.outline, swatch: {line: true, color: cfg.outline_styles['4'].color,
                                                            weight: 2}});
      var lines = [{id: 'wangge-household-count', text: shown ? t.count.replace('{shown}', shown) : t.none}];
      if (total > shown) {
        lines.push({id: 'wangge-truncated-note', note: true,
                    text: t.truncated.replace('{shown}', shown).replace('{total}', total)});
      }
      if (features.some(function (f) { return f.properties.personal_fields === 'masked'; })) {
        lines.push({id: 'wangge-masked-note', note: true, text: t.masked, hint: t.masked_hint});
      }
      legend.set(rows, lines);
      V.loaded();
    }
    function query(bbox) {
      return V.withQuery(cfg.list_url, {format: 'geojson', bbox: bbox, limit: cfg.limit,
                                        grid_code: cfg.query.grid_code, reason: cfg.query.reason});
    }

    if (cfg.bounds) { map.fitBounds(cfg.bounds, {padding: [20, 20], animate: false}); }
    var outlineLoader = V.byView(map, loadOutlines, drawOutlines);
    var loader = V.byView(map, function (bbox) { return W.api(query(bbox)); }, draw, {
      complete: function (fc) { return fc.numberMatched !== undefined && fc.numberMatched <= fc.features.length; }
    });
    outlineLoader.reload();
    loader.reload();
  });
})();
