/* The incident map (/maps/incidents): open incidents by default, newest first, loaded for the view
   from the incident list (GeoJSON); filter controls re-query by URL. Overdue ones ringed red on top. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    var filters = Object.assign({state: '', category: '', since: '', until: '', overdue: ''}, cfg.filters);
    var gridNames = {};

    map.createPane('wangge-outlines').style.zIndex = 410;
    map.getPane('wangge-outlines').style.pointerEvents = 'none';
    map.createPane('wangge-points').style.zIndex = 450;
    var renderer = L.canvas({padding: 0.5, pane: 'wangge-points'});

    // --- grid outlines for the view (context only; they also name the grids in popups) ---
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
        // Fine levels first, so a village line is drawn over its group grids' lines.
        outlines.addData(fc);
      });
    }

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
    var incidents = L.geoJSON(null, {
      pane: 'wangge-points',
      pointToLayer: function (feature, latlng) {
        var style = cfg.styles[styleKey(feature.properties)];
        return L.circleMarker(latlng, Object.assign({renderer: renderer, pane: 'wangge-points'}, style));
      },
      onEachFeature: function (feature, layer) {
        layer.bindPopup(function () { return popupContent(feature); },
                        {maxWidth: 340, className: 'wangge-popup'});
      }
    }).addTo(map);
    window.wanggeIncidents = incidents;

    function query(bbox) {
      var q = {format: 'geojson', bbox: bbox, limit: cfg.limit, grid_code: cfg.query.grid_code,
               reason: cfg.query.reason, category: filters.category, overdue: filters.overdue,
               since: filters.since, until: filters.until};
      if (filters.state === 'all') { /* every state, closed included */ }
      else if (filters.state) { q.state = filters.state; }
      else { q.open = 'true'; }
      return V.withQuery(cfg.list_url, q);
    }

    var legend = V.legend(map, t.legend_title);
    function drawLegend(fc) {
      var present = {};
      var anyOverdue = false;
      fc.features.forEach(function (f) {
        var k = styleKey(f.properties);
        present[k.split(':')[0]] = true;
        if (f.properties.overdue) { anyOverdue = true; }
      });
      var rows = cfg.category_order.filter(function (k) { return present[k]; }).map(function (k) {
        return {key: k, label: k === cfg.other ? t.other_category : cfg.zh.categories[k],
                swatch: cfg.styles[k]};
      });
      if (anyOverdue) {
        rows.push({key: 'overdue', label: t.overdue_legend,
                   swatch: Object.assign({}, cfg.styles[cfg.other + cfg.overdue_suffix], {fill: '#ffffff'})});
      }
      rows.forEach(function (r) {
        r.swatch = {fill: r.swatch.fillColor || r.swatch.fill, color: r.swatch.color, weight: r.swatch.weight,
                    radius: r.swatch.radius, opacity: r.swatch.fillOpacity};
      });
      rows.push({key: 'outline', label: t.outline, swatch: {line: true, color: cfg.outline_styles['4'].color,
                                                            weight: 2}});
      var shown = fc.features.length;
      var total = fc.numberMatched;
      var lines = [{id: 'wangge-incident-count',
                    text: shown ? t.count.replace('{total}', total === undefined ? t.many : total) : t.none}];
      lines.push({id: 'wangge-incident-filters', text: describeFilters()});
      if (total === undefined || total > shown) {
        lines.push({id: 'wangge-truncated-note', note: true, text: t.truncated.replace('{shown}', shown)});
      }
      if (cfg.reporter_masked && shown) {
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
    function draw(fc) {
      incidents.clearLayers();
      // Overdue last: canvas markers are painted in order, so they stay on top where points crowd.
      var features = fc.features.slice().sort(function (a, b) {
        return (a.properties.overdue ? 1 : 0) - (b.properties.overdue ? 1 : 0);
      });
      incidents.addData({type: 'FeatureCollection', features: features});
      drawLegend(fc);
      V.loaded();
    }

    // Fit first: the loaders follow the view from then on (no load for the fit itself).
    if (cfg.bounds) { map.fitBounds(cfg.bounds, {padding: [20, 20], animate: false}); }
    var outlineLoader = V.byView(map, loadOutlines, drawOutlines);
    var loader = V.byView(map, function (bbox) { return W.api(query(bbox)); }, draw, {
      complete: function (fc) { return fc.numberMatched !== undefined && fc.numberMatched <= fc.features.length; }
    });

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
      return loader.reload();
    }
    [stateSel, categorySel, overdueSel, since, until].forEach(function (el) {
      el.addEventListener('change', apply);
    });
    form.addEventListener('submit', function (e) { e.preventDefault(); apply(); });
    window.wanggeApplyFilters = apply;

    outlineLoader.reload();
    loader.reload();
  });
})();
