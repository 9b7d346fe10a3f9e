/* The incident map (/maps/incidents): every incident the viewer may see under the filters (open ones by
   default) as vector tiles: counted blocks at low zoom, points coloured by category from the point zoom
   on, overdue ones ringed red on top; a click reads the incident and shows it. The filter controls
   change the tile URL; grid outlines come as GeoJSON for the view. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    var filters = Object.assign({state: '', category: '', since: '', until: '', overdue: ''}, cfg.filters);
    var gridNames = {};

    // Grid outlines for the view (context only; they also name the grids in popups).
    var outlines = V.gridOutlines(map, cfg, gridNames);
    map.createPane('wangge-points').style.zIndex = 450;

    // --- the incidents ---
    function styleKey(p) {
      var key = cfg.styles[p.category] ? p.category : cfg.other;
      return key + (p.overdue ? cfg.overdue_suffix : '');
    }
    function gridText(code) {
      if (!code) { return null; }
      return gridNames[code] ? gridNames[code] + '（' + code + '）' : code;
    }
    function urgency(p) {
      if (p.overdue) {
        var level = cfg.level_names[String(p.escalation_level)] || '';
        return t.overdue.replace('{place}', level + '（' + (p.escalated_to || '') + '）');
      }
      return p.deadline ? t.on_time : null;
    }
    function categoryText(p) {
      var name = cfg.zh.categories[p.category] || p.category;
      var kind = p.dispute_kind ? (cfg.zh.kinds[p.dispute_kind] || p.dispute_kind) : null;
      return kind ? name + t.category_join + kind : name;
    }
    function popupContent(feature) {
      var p = feature.properties;
      var values = {
        id: feature.id, category: categoryText(p), state: cfg.zh.states[p.state] || p.state,
        occurred_at: p.occurred_at ? W.time(p.occurred_at) : null,
        deadline: p.deadline ? W.time(p.deadline) : null, urgency: urgency(p),
        grid: gridText(p.group_code), description: p.description,
        reporter_name: p.reporter_name, reporter_phone: p.reporter_phone
      };
      var box = W.el('div', {});
      box.appendChild(V.table(cfg.fields.map(function (f) { return [f[1], values[f[0]]]; }),
                              t.blank, 'data-incident-id', feature.id));
      if (cfg.detail_url) {
        var a = W.el('a', {'class': 'wangge-popup-link'}, t.open_detail);
        a.setAttribute('href', cfg.detail_url.replace('{id}', String(feature.id)));
        box.appendChild(a);
      }
      return box;
    }
    /* Every incident the viewer may see under the filters, as vector tiles (/tiles/incidents, built by
       PostGIS): counted blocks below the layer's point zoom, single points from it on. No view is cut. */
    function openPopup(p, latlng) {
      var popup = L.popup({maxWidth: 340, className: 'wangge-popup'}).setLatLng(latlng)
        .setContent(W.el('div', {}, t.loading)).openOn(map);
      return W.api(V.withQuery(cfg.detail_api_url.replace('{id}', String(p.id)), {reason: cfg.query.reason}))
        .then(function (detail) {
          popup.setContent(popupContent({id: detail.id, properties: detail}));
        }).catch(function (err) { map.closePopup(popup); W.showError(err); });
    }
    function tileUrl() {
      var q = {grid_code: cfg.query.grid_code, category: filters.category, overdue: filters.overdue,
               since: filters.since, until: filters.until};
      if (filters.state === 'all') { q.open = 'false'; }
      else if (filters.state) { q.state = filters.state; }
      return V.withQuery(cfg.tiles.url, q);
    }
    var firstLoad = true;
    var incidents = V.tiles(map, {
      name: 'incidents', url: tileUrl(), maxzoom: cfg.tiles.maxzoom, pointZoom: cfg.tiles.point_minzoom,
      aggregateTitle: t.aggregate_title, aggregateColour: 'rgba(123,50,148,0.85)',
      style: function (p) {
        var s = cfg.styles[styleKey(p)];
        return {radius: s.radius, color: s.color, weight: s.weight, fill: true, fillColor: s.fillColor,
                fillOpacity: s.fillOpacity, opacity: 1};
      },
      rank: function (p) { return p.overdue ? 1 : 0; },
      onClick: openPopup,
      onLoad: function () { drawLegend(); if (firstLoad) { firstLoad = false; } V.loaded(); }
    });
    window.wanggeIncidents = incidents;
    // Opens the popup of one point as a click does (tests read many without aiming at each).
    window.wanggeOpenIncident = openPopup;
    map.on('moveend', function () { drawLegend(); });

    var legend = V.legend(map, t.legend_title);
    function drawLegend() {
      var rows = cfg.category_order.map(function (k) {
        return {key: k, label: k === cfg.other ? t.other_category : cfg.zh.categories[k], swatch: cfg.styles[k]};
      });
      rows.push({key: 'overdue', label: t.overdue_legend,
                 swatch: Object.assign({}, cfg.styles[cfg.other + cfg.overdue_suffix], {fillColor: '#ffffff'})});
      rows.forEach(function (r) {
        r.swatch = {fill: r.swatch.fillColor, color: r.swatch.color, weight: r.swatch.weight,
                    radius: r.swatch.radius, opacity: r.swatch.fillOpacity};
      });
      rows.push({key: 'aggregate', label: t.aggregate_legend,
                 swatch: {fill: '#7b3294', color: '#ffffff', weight: 2, radius: 6.5, opacity: 0.85}});
      rows.push({key: 'outline', label: t.outline, swatch: {line: true, color: cfg.outline_styles['4'].color,
                                                            weight: 2}});
      var total = incidents.inView().count;
      var lines = [{id: 'wangge-incident-count', text: total ? t.count.replace('{total}', total) : t.none}];
      lines.push({id: 'wangge-incident-filters', text: describeFilters()});
      if (map.getZoom() < cfg.tiles.point_minzoom) {
        lines.push({id: 'wangge-zoom-note', note: true, text: t.zoom_for_points});
      }
      if (cfg.reporter_masked) {
        lines.push({id: 'wangge-masked-note', note: true, text: t.masked, hint: t.masked_hint});
      }
      legend.set(rows, lines);
    }
    function describeFilters() {
      var parts = [];
      if (filters.state === 'all') { parts.push(t.filter_all_states); }
      else if (filters.state) { parts.push(t.filter_state.replace('{value}', cfg.zh.states[filters.state])); }
      else { parts.push(t.filter_open); }
      if (filters.category) {
        parts.push(t.filter_category.replace('{value}', cfg.zh.categories[filters.category]));
      }
      if (filters.since) { parts.push(t.filter_since.replace('{value}', W.time(filters.since))); }
      if (filters.until) { parts.push(t.filter_until.replace('{value}', W.time(filters.until))); }
      if (filters.overdue === 'true') { parts.push(t.filter_overdue_true); }
      if (filters.overdue === 'false') { parts.push(t.filter_overdue_false); }
      return t.filter_prefix + parts.join(t.filter_join);
    }
    // Fit first: the outlines follow the view from then on (no load for the fit itself).
    if (cfg.bounds) { map.fitBounds(cfg.bounds, {padding: [20, 20], animate: false}); }
    var outlineLoader = V.byView(map, outlines.load, outlines.draw);

    // --- filter controls: they change the URL and re-query ---
    function dateOf(iso) { return iso ? W.time(iso).slice(0, 10) : ''; }
    function isoOf(date, nextDay) {
      if (!date) { return ''; }
      var d = new Date(date + 'T00:00:00+08:00');
      if (nextDay) { d = new Date(d.getTime() + 86400000); }
      // Beijing time, as the town reads its clock.
      var local = new Date(d.getTime() + 8 * 3600000).toISOString().slice(0, 19);
      return local + '+08:00';
    }
    var stateSel = V.select('wangge-filter-state', [['', t.filter_open_option]].concat(cfg.states)
                            .concat([['all', t.filter_all_option]]), filters.state);
    var categorySel = V.select('wangge-filter-category', [['', t.all_categories]].concat(cfg.categories),
                               filters.category);
    var overdueSel = V.select('wangge-filter-overdue', [['', t.overdue_any], ['true', t.overdue_true],
                                                        ['false', t.overdue_false]], filters.overdue);
    var since = W.el('input', {type: 'date', id: 'wangge-filter-since'});
    since.value = dateOf(filters.since);
    var until = W.el('input', {type: 'date', id: 'wangge-filter-until'});
    // `until` is the first moment after the chosen day.
    until.value = filters.until ? dateOf(new Date(new Date(filters.until).getTime() - 1).toISOString()) : '';
    function labelled(text, input) {
      var l = W.el('label', {}, text);
      l.setAttribute('for', input.id);
      return [l, input];
    }
    var form = W.el('form', {'class': 'wangge-filter-form', id: 'wangge-incident-filter-form'});
    [].concat(labelled(t.state_label, stateSel), labelled(t.category_label, categorySel),
              labelled(t.since_label, since), labelled(t.until_label, until),
              labelled(t.overdue_label, overdueSel)).forEach(function (e) { form.appendChild(e); });
    V.panel(map, t.filter_title, form, 'wangge-incident-filters-panel');
    function apply() {
      filters = {state: stateSel.value, category: categorySel.value, overdue: overdueSel.value,
                 since: isoOf(since.value, false), until: isoOf(until.value, true)};
      var params = new URLSearchParams(window.location.search);
      ['state', 'category', 'overdue', 'since', 'until'].forEach(function (k) {
        if (filters[k]) { params.set(k, filters[k]); } else { params.delete(k); }
      });
      var s = params.toString();
      window.history.replaceState(null, '', window.location.pathname + (s ? '?' + s : ''));
      document.documentElement.removeAttribute('data-wangge-loaded');
      incidents.setQuery(tileUrl());
    }
    [stateSel, categorySel, overdueSel, since, until].forEach(function (el) {
      el.addEventListener('change', apply);
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); apply(); });
    window.wanggeApplyFilters = apply;

    outlineLoader.reload();
  });
})();
