/* The planner's map (/maps/planner): pick a village, ask GET /plans/suggestions for balanced regroupings
   of its units, and see each suggestion's grids filled over the current grid outlines (GET /grids by
   view), with a table of their loads, deviations and compactness. Everything the server sends is
   data: names and codes reach the page through textContent only. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text;
    // Leaflet-Geoman (line drawing for splits) loads after the map was made: give the map its handler.
    if (window.L && L.PM && !map.pm) { map.pm = new L.PM.Map(map); }
    var names = {};
    var villages = {};   // code -> GeoJSON feature
    var answer = null;

    // Current grids: outlines for the view (context; the suggestion is drawn under them).
    var outlines = V.gridOutlines(map, cfg, names);
    var outlineView = V.byView(map, outlines.load, outlines.draw);
    map.createPane('wangge-suggested').style.zIndex = 405;
    var suggested = L.geoJSON(null, {
      pane: 'wangge-suggested', pmIgnore: true,
      style: function (f) {
        return {color: '#333', weight: 1.5, fillColor: cfg.palette[f.properties.index % cfg.palette.length],
                fillOpacity: 0.55};
      },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(function () {
          return W.el('span', {}, f.properties.name + ' · ' + f.properties.load);
        }, {sticky: true});
      }
    }).addTo(map);
    window.wanggeSuggested = suggested;
    // The village's units (cells), faint under everything: what suggestions and painting are made of.
    map.createPane('wangge-units').style.zIndex = 402;
    var unitLayer = L.geoJSON(null, {
      pane: 'wangge-units', pmIgnore: true,
      style: function () { return {color: '#888', weight: 0.5, fillOpacity: 0, opacity: 0.7}; },
      onEachFeature: function (f, layer) {
        layer.bindTooltip(function () {
          return W.el('span', {}, t.unit_tooltip.replace('{households}', f.properties.households)
            .replace('{residents}', f.properties.residents));
        }, {sticky: true});
      }
    }).addTo(map);
    window.wanggeUnits = unitLayer;
    function loadUnits() {
      unitLayer.clearLayers();
      if (!village.value) { return Promise.resolve(); }
      return W.api(V.withQuery(cfg.units_url, {village: village.value, units: units.value}))
        .then(function (fc) { unitLayer.addData(fc); });
    }

    // The form.
    function field(id, label, input) {
      return [W.el('label', {'for': id}, label), input];
    }
    var village = V.select('planner-village', [['', t.village_pick]], '');
    var n = W.el('input', {id: 'planner-n', type: 'number', min: '1', max: '999', step: '1'});
    var tolerance = W.el('input', {id: 'planner-tolerance', type: 'number', min: '1', max: '99', step: '1',
                                   value: String(cfg.defaults.tolerance_percent)});
    var weight = V.select('planner-weight', cfg.weights, 'households');
    var units = V.select('planner-units', cfg.unit_kinds, 'household');
    var run = W.el('button', {type: 'button', id: 'planner-run'}, t.run);
    var status = W.el('div', {id: 'planner-status', 'class': 'wangge-legend-line', 'aria-live': 'polite'});
    var options = W.el('div', {id: 'planner-options', 'class': 'wangge-planner-options'});
    var summary = W.el('div', {id: 'planner-summary', 'class': 'wangge-legend-line'});
    var tableBox = W.el('div', {id: 'planner-table', 'class': 'wangge-planner-table'});
    // Publishing (roles that may change grids): the suggestion shown, now or at a chosen instant.
    var effective = W.el('input', {id: 'planner-effective', type: 'datetime-local'});
    var publishButton = W.el('button', {type: 'button', id: 'planner-publish'}, t.publish);
    var impactButton = W.el('button', {type: 'button', id: 'planner-impact-button'}, t.impact);
    var impactBox = W.el('div', {id: 'planner-impact', 'class': 'wangge-planner-table'});
    impactBox.style.overflow = 'auto';
    impactBox.style.maxHeight = '30vh';
    var published = W.el('div', {id: 'planner-published', 'class': 'wangge-legend-line', 'aria-live': 'polite'});
    var publishBox = W.el('div', {id: 'planner-publish-box', hidden: true}, impactButton, impactBox,
                          W.el('label', {'for': 'planner-effective'}, t.effective), effective, publishButton,
                          published);
    // The table scrolls inside the panel, so a phone keeps most of the map in sight.
    tableBox.style.overflow = 'auto';
    tableBox.style.maxHeight = '35vh';
    var form = W.el('div', {'class': 'wangge-filter-form'},
                    field('planner-village', t.village, village), field('planner-n', t.n, n),
                    field('planner-tolerance', t.tolerance, tolerance), field('planner-weight', t.weight, weight),
                    field('planner-units', t.units, units));
    V.panel(map, t.panel_title, W.el('div', {}, form, run, status, options, summary, tableBox,
                                      cfg.can_publish ? publishBox : null), 'planner-panel');
    var asked = null, shown = null;  // the parameters of the answer on screen, the suggestion shown
    status.textContent = t.none;

    // The villages (level 3) fill the picker; picking one frames it and proposes its current number of grids.
    W.api(V.withQuery(cfg.grids_url, {level: 3, limit: cfg.limit})).then(function (fc) {
      (fc.features || []).slice().sort(function (a, b) {
        return a.properties.code < b.properties.code ? -1 : 1;
      }).forEach(function (f) {
        villages[f.properties.code] = f;
        village.appendChild(W.el('option', {value: f.properties.code},
                                 f.properties.name + '（' + f.properties.code + '）'));
      });
      return outlineView.reload();
    }).then(function () { V.loaded(); }).catch(W.showError);

    village.addEventListener('change', function () {
      var f = villages[village.value];
      if (!f) { return; }
      map.fitBounds(L.geoJSON(f).getBounds());
      W.api(V.withQuery(cfg.grids_url, {level: 4, parent_code: f.properties.code, limit: cfg.limit}))
        .then(function (fc) { n.value = String(Math.max(1, (fc.features || []).length)); })
        .catch(W.showError);
      loadUnits().catch(W.showError);
    });
    units.addEventListener('change', function () { loadUnits().catch(W.showError); });

    function percent(x) { return (Math.round(x * 1000) / 10).toFixed(1); }

    function show(i) {
      var s = answer.suggestions[i];
      Array.prototype.forEach.call(options.children, function (b, k) {
        b.classList.toggle('selected', k === i);
        b.setAttribute('aria-pressed', k === i ? 'true' : 'false');
      });
      suggested.clearLayers();
      s.grids.forEach(function (g, k) {
        suggested.addData({type: 'Feature', geometry: g.geometry,
                           properties: {index: k, code: g.code, name: g.name, load: g.load}});
      });
      summary.textContent = t.summary.replace('{balance}', percent(s.balance))
        .replace('{pp}', s.mean_polsby_popper.toFixed(3)).replace('{cut}', String(s.cut_edges))
        .replace('{seconds}', s.seconds.toFixed(1)) + '；' + (s.within_tolerance ? t.within : t.outside) + '；' +
        t.replaces.replace('{n}', String(answer.replaced_codes.length));
      var table = W.el('table', {'class': 'wangge-popup-table', id: 'planner-grids'});
      var head = table.createTHead().insertRow();
      t.columns.forEach(function (c) { head.appendChild(W.el('th', {}, c)); });
      var body = table.createTBody();
      s.grids.forEach(function (g, k) {
        var tr = body.insertRow();
        tr.setAttribute('data-code', g.code);
        [g.name, g.load, g.households, g.residents, g.incidents, percent(g.deviation) + '%',
         g.polsby_popper.toFixed(3)].forEach(function (v) {
          var cell = tr.insertCell();
          cell.textContent = String(v);
          cell.style.whiteSpace = 'nowrap';
        });
        tr.title = g.code;
        tr.cells[0].style.borderLeft = '8px solid ' + cfg.palette[k % cfg.palette.length];
        tr.addEventListener('click', function () {
          suggested.eachLayer(function (layer) {
            if (layer.feature.properties.code === g.code) { map.fitBounds(layer.getBounds()); }
          });
        });
      });
      tableBox.replaceChildren(table);
      shown = s;
      publishBox.hidden = false;
      published.textContent = '';
      impactBox.replaceChildren();
      document.documentElement.setAttribute('data-planner-shown', String(i));
    }

    run.addEventListener('click', function () {
      W.clearError();
      if (!village.value) { status.textContent = t.no_village; return; }
      run.disabled = true;
      status.textContent = t.running;
      document.documentElement.removeAttribute('data-planner-shown');
      var params = {
        village: village.value, n: n.value, tolerance: Number(tolerance.value) / 100, weight: weight.value,
        units: units.value, steps: cfg.defaults.steps
      };
      W.api(V.withQuery(cfg.suggestions_url, Object.assign({count: cfg.defaults.count}, params))).then(function (a) {
        answer = a;
        asked = params;
        status.textContent = a.village_name + '：' + a.n_grids + ' 个网格，目标负荷 ' + a.target.toFixed(1);
        options.replaceChildren();
        a.suggestions.forEach(function (s, i) {
          var b = W.el('button', {type: 'button', 'class': 'wangge-planner-option', 'data-index': String(i)},
                       t.option.replace('{n}', String(i + 1)));
          b.addEventListener('click', function () { show(i); });
          options.appendChild(b);
        });
        show(0);
      }).catch(function (err) {
        status.textContent = '';
        W.showError(err);
      }).then(function () { run.disabled = false; });
    });

    // Beijing time as the planner types it (datetime-local has no zone).
    function instant(local) { return local ? (local.length === 16 ? local + ':00' : local) + '+08:00' : null; }

    // The impact of publishing the suggestion shown: who moves from which grid to which.
    impactButton.addEventListener('click', function () {
      if (!shown || !asked) { return; }
      W.clearError();
      impactButton.disabled = true;
      impactBox.replaceChildren(W.el('div', {}, t.running));
      W.api(V.withQuery(cfg.impact_url, Object.assign({}, asked, {seed: shown.seed, fingerprint: shown.fingerprint})))
        .then(function (r) {
          var table = W.el('table', {'class': 'wangge-popup-table', id: 'planner-moves'});
          var head = table.createTHead().insertRow();
          t.impact_columns.forEach(function (c) { head.appendChild(W.el('th', {}, c)); });
          var body = table.createTBody();
          r.moves.forEach(function (m) {
            var tr = body.insertRow();
            [W.name('grid', m.from) || m.from || t.none_grid, W.name('grid', m.to) || m.to || t.none_grid,
             m.households, m.residents, m.open_incidents].forEach(function (v) {
              var cell = tr.insertCell();
              cell.textContent = String(v);
              cell.style.whiteSpace = 'nowrap';
            });
            tr.setAttribute('data-from', m.from || '');
            tr.setAttribute('data-to', m.to || '');
          });
          impactBox.replaceChildren(
            W.el('div', {id: 'planner-impact-totals'}, t.impact_totals.replace('{households}', r.totals.households)
              .replace('{residents}', r.totals.residents).replace('{incidents}', r.totals.open_incidents)
              .replace('{staff}', r.staff.length).replace('{decisions}', r.decisions.length)),
            table);
          document.documentElement.setAttribute('data-planner-impact', shown.fingerprint);
        }).catch(function (err) {
          impactBox.replaceChildren();
          W.showError(err);
        }).then(function () { impactButton.disabled = false; });
    });

    publishButton.addEventListener('click', function () {
      if (!shown || !asked) { return; }
      W.clearError();
      publishButton.disabled = true;
      published.textContent = t.publishing;
      var body = {
        village: asked.village, n: Number(asked.n), tolerance: asked.tolerance, weight: asked.weight,
        units: asked.units, steps: asked.steps, seed: shown.seed, fingerprint: shown.fingerprint,
        base: answer.base, effective_at: instant(effective.value)
      };
      W.api(cfg.publish_url, {method: 'POST', json: body}).then(function (r) {
        var text = r.status === 'pending' ? t.scheduled.replace('{at}', W.time(r.effective_at)) : t.published;
        published.textContent = text + t.publish_counts.replace('{created}', r.created.length)
          .replace('{replaced}', r.replaced.length).replace('{retired}', r.retired.length)
          .replace('{staff}', r.staff_moved.length).replace('{incidents}', r.incidents_moved);
        document.documentElement.setAttribute('data-planner-published', r.status + ':' + r.publish_id);
        if (r.status === 'applied') {
          suggested.clearLayers();
          shown = null;
          return Promise.all([outlineView.reload(), loadUnits()]);
        }
      }).catch(function (err) {
        published.textContent = '';
        W.showError(err);
      }).then(function () { publishButton.disabled = false; });
    });

    // Editing a draft plan (maps/static/planner_edit.js), for the roles that may plan.
    var villageListeners = [];
    village.addEventListener('change', function () { villageListeners.forEach(function (fn) { fn(); }); });
    if (cfg.can_plan && window.WanggePlannerEdit) {
      window.WanggePlannerEdit({
        map: map, unitLayer: unitLayer,
        village: function () { return village.value; },
        villageName: function () { var f = villages[village.value]; return f ? f.properties.name : ''; },
        unitKind: function () { return units.value; },
        suggestion: function () {
          return shown && asked ? {village: asked.village, n: Number(asked.n), tolerance: asked.tolerance,
                                   weight: asked.weight, units: asked.units, steps: asked.steps, seed: shown.seed,
                                   fingerprint: shown.fingerprint} : null;
        },
        reloadCurrent: function () { return Promise.all([outlineView.reload(), loadUnits()]); },
        onVillage: function (fn) { villageListeners.push(fn); }
      });
    }

    var legend = V.legend(map, t.legend_title);
    legend.set([
      {key: 'current', label: t.current, swatch: {line: true, color: cfg.outline_styles['4'].color, weight: 2}},
      {key: 'suggested', label: t.suggested, swatch: {fill: cfg.palette[0], color: '#333', weight: 1.5}}
    ]);
  });
})();
