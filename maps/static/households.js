/* The household map (/maps/households): the households the viewer may see as vector tiles
   (/tiles/households: counted blocks at low zoom, single houses coloured by who needs help first from
   the point zoom on, personal fields as the role may see them, unmasked tiles audited there); a click
   reads the household (GET /households/{id}, masked and audited there). Grid outlines by view. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    var gridNames = {};

    // Grid outlines for the view (context only; they also name the grids in popups).
    var outlines = V.gridOutlines(map, cfg, gridNames);
    map.createPane('wangge-points').style.zIndex = 450;

    function vulnerability(p) {
      if ((p.bedridden || 0) > 0 || (p.disabled || 0) > 0) { return 'carry'; }
      if ((p.elderly || 0) > 0 || (p.pregnant || 0) > 0) { return 'assist'; }
      return 'other';
    }
    function popupContent(p) {
      var grid = p.grid_name && p.grid_code ? p.grid_name + '（' + p.grid_code + '）' :
        (p.grid_name || p.grid_code || (p.group_code ? (gridNames[p.group_code] || p.group_code) : null));
      var values = Object.assign({}, p, {grid: grid});
      return V.table(cfg.fields.map(function (f) { return [f[1], values[f[0]]]; }), t.blank,
                     'data-household-no', p.household_no);
    }
    // A click reads the household (GET /households/{id}, which masks and audits as the list does).
    function openPopup(p, latlng) {
      var popup = L.popup({maxWidth: 340, className: 'wangge-popup'}).setLatLng(latlng)
        .setContent(W.el('div', {}, t.loading)).openOn(map);
      return W.api(V.withQuery(cfg.detail_api_url.replace('{id}', String(p.id)), {reason: cfg.query.reason}))
        .then(function (detail) { popup.setContent(popupContent(detail)); })
        .catch(function (err) { map.closePopup(popup); W.showError(err); });
    }
    var rank = {other: 0, assist: 1, carry: 2};
    var households = V.tiles(map, {
      name: 'households', url: V.withQuery(cfg.tiles.url, {reason: cfg.query.reason}),
      maxzoom: cfg.tiles.maxzoom, pointZoom: cfg.tiles.point_minzoom,
      aggregateTitle: t.aggregate_title, aggregateColour: 'rgba(29,78,137,0.85)',
      style: function (p) {
        var s = cfg.styles[vulnerability(p)];
        return {radius: s.radius, color: s.color, weight: s.weight, fill: true, fillColor: s.fillColor,
                fillOpacity: s.fillOpacity, opacity: 1};
      },
      // The most urgent class last: drawn on top where houses crowd.
      rank: function (p) { return rank[vulnerability(p)]; },
      onClick: openPopup,
      onLoad: function () { drawLegend(); V.loaded(); }
    });
    window.wanggeHouseholds = households;
    // Opens the popup of one point as a click does (tests read many without aiming at each).
    window.wanggeOpenHousehold = openPopup;

    var legend = V.legend(map, t.legend_title);
    function drawLegend() {
      var rows = ['carry', 'assist', 'other'].map(function (k) {
        var s = cfg.styles[k];
        return {key: k, label: cfg.classes[k], swatch: {fill: s.fillColor, color: s.color, weight: s.weight,
                                                       radius: s.radius, opacity: s.fillOpacity}};
      });
      rows.push({key: 'aggregate', label: t.aggregate_legend,
                 swatch: {fill: '#1d4e89', color: '#ffffff', weight: 2, radius: 6.5, opacity: 0.85}});
      rows.push({key: 'outline', label: t.outline, swatch: {line: true, color: cfg.outline_styles['4'].color,
                                                            weight: 2}});
      var seen = households.inView();
      var lines = [{id: 'wangge-household-count',
                    text: seen.count ? t.count.replace('{shown}', seen.count) : t.none}];
      if (map.getZoom() < cfg.tiles.point_minzoom) {
        lines.push({id: 'wangge-zoom-note', note: true, text: t.zoom_for_points});
      }
      // A house whose personal fields the role may not see carries none of them in the tile.
      if (seen.points.some(function (pt) { return pt.properties[cfg.personal_fields[0]] === undefined; })) {
        lines.push({id: 'wangge-masked-note', note: true, text: t.masked, hint: t.masked_hint});
      }
      legend.set(rows, lines);
    }
    map.on('moveend', function () { drawLegend(); });

    if (cfg.bounds) { map.fitBounds(cfg.bounds, {padding: [20, 20], animate: false}); }
    var outlineLoader = V.byView(map, outlines.load, outlines.draw);
    outlineLoader.reload();
  });
})();
