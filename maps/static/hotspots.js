/* The hot-spot map (/maps/hotspots): units hot to cold, each popup in plain words with the
   statistics one click away ("统计详情") and the unit's incidents on request; a unit with nothing
   of its own inside a hot cluster is "in a hot area". Data from /hotspots/map. */
(function () {
  'use strict';
  var W = window.Wangge, V = W.view;

  W.ready(function () {
    var cfg = W.config, map = W.map, t = cfg.text, form = cfg.form;
    window.wanggeHotspots = null;
    window.wanggeDensity = null;
    map.createPane('wangge-hotspot-density').style.zIndex = 410;
    map.getPane('wangge-hotspot-density').style.pointerEvents = 'none';
    map.createPane('wangge-hotspot-units').style.zIndex = 420;

    // --- the form: a new analysis is a new page (GET), the colouring changes in place ---
    function month(id, value) {
      var input = W.el('input', {type: 'month', id: id});
      input.name = id === 'wangge-since' ? 'since_month' : 'until_month';
      input.value = value || '';
      return input;
    }
    function labelled(text, input) {
      var l = W.el('label', {}, text);
      l.setAttribute('for', input.id);
      return [l, input];
    }
    var f = W.el('form', {'class': 'wangge-hotspot-form', id: 'wangge-hotspot-form'});
    f.setAttribute('method', 'get');
    f.setAttribute('action', window.location.pathname);
    var units = V.select('wangge-units', cfg.unit_options, form.units);
    units.name = 'units';
    var category = V.select('wangge-category', cfg.category_options, form.category);
    category.name = 'category';
    var colour = V.select('wangge-colour-by', [['bins', t.colour_bins], ['emerging', t.colour_emerging]], 'bins');
    [].concat(labelled(t.since, month('wangge-since', form.since_month)),
              labelled(t.until, month('wangge-until', form.until_month)),
              labelled(t.unit, units), labelled(t.category, category),
              labelled(t.colour_by, colour)).forEach(function (e) { f.appendChild(e); });
    ['grid_code', 'dispute_kind', 'value', 'smoothing'].forEach(function (k) {
      if (form[k]) {
        var h = W.el('input', {type: 'hidden'});
        h.name = k;
        h.value = form[k];
        f.appendChild(h);
      }
    });
    // Month inputs left empty are not sent (an empty since_month is no month).
    f.addEventListener('submit', function () {
      f.querySelectorAll('input').forEach(function (i) { if (!i.value) { i.disabled = true; } });
    });
    f.appendChild(W.el('button', {type: 'submit'}, t.submit));
    V.panel(map, t.form_title, f, 'wangge-hotspot-panel');

    // --- popups: plain words first; the unit's incidents and the statistics on request ---
    function incidentsOf(feature, box, button, popup) {
      button.disabled = true;
      var url = V.withQuery(cfg.drill_url.replace('{id}', encodeURIComponent(feature.id)), cfg.drill_down);
      W.api(url).then(function (answer) {
        button.remove();
        box.appendChild(W.el('div', {'class': 'wangge-hotspot-incidents-title'},
                             t.incidents_title.replace('{count}', answer.total)));
        var ul = W.el('ul', {'class': 'wangge-hotspot-incidents'});
        answer.items.slice(0, cfg.max_listed).forEach(function (i) {
          var kind = i.dispute_kind ? (cfg.zh.kinds[i.dispute_kind] || i.dispute_kind) : null;
          var li = W.el('li', {}, '#' + i.id + ' ' + [kind || cfg.zh.categories[i.category] || i.category,
                                                      W.time(i.occurred_at).slice(0, 10),
                                                      cfg.zh.states[i.state] || i.state].join(' · '));
          li.setAttribute('data-incident-id', String(i.id));
          ul.appendChild(li);
        });
        box.appendChild(ul);
        var listed = Math.min(answer.items.length, cfg.max_listed);
        if (answer.total > listed) {
          box.appendChild(W.el('div', {}, t.more.replace('{count}', answer.total - listed)));
        }
        popup.update();
      }).catch(function (err) {
        button.disabled = false;
        W.showError(err);
      });
    }
    function popupContent(feature, popup) {
      var p = feature.properties;
      var box = W.el('div', {'class': 'wangge-hotspot-popup'});
      box.setAttribute('data-unit-id', feature.id);
      box.setAttribute('data-status', p.status);
      box.appendChild(W.el('h4', {'class': 'wangge-hotspot-headline status-' + p.status}, p.headline));
      p.story.forEach(function (line) { box.appendChild(W.el('p', {'class': 'wangge-hotspot-story'}, line)); });
      var listBox = W.el('div', {});
      if (p.incidents > 0) {
        var button = W.el('button', {type: 'button', 'class': 'wangge-hotspot-show-incidents'}, t.show_incidents);
        button.addEventListener('click', function () { incidentsOf(feature, listBox, button, popup); });
        listBox.appendChild(button);
      }
      box.appendChild(listBox);
      var details = W.el('details', {'class': 'wangge-hotspot-details'});
      details.appendChild(W.el('summary', {}, t.details));
      details.appendChild(V.table(p.stats, t.blank, 'data-unit-id', feature.id));
      details.addEventListener('toggle', function () { popup.update(); });
      box.appendChild(details);
      return box;
    }

    function refused(lines) {
      var box = W.el('div', {'class': 'wangge-ui wangge-hotspot-refused', id: 'wangge-hotspot-refused'});
      box.setAttribute('role', 'alert');
      box.appendChild(W.el('h3', {}, t.refused));
      lines.forEach(function (line) { box.appendChild(W.el('p', {}, line)); });
      map.getContainer().appendChild(box);
    }

    var legend = V.legend(map, t.legend_title);
    function legendRows(data) {
      var present = {}, statuses = {};
      data.features.forEach(function (ft) {
        present[ft.properties.emerging] = true;
        statuses[ft.properties.status] = true;
      });
      var rows = cfg.bins.map(function (b) {
        return {key: b.key, label: b.label, mode: 'bins', swatch: {fill: b.fill, color: '#6b6b6b', weight: 0.6}};
      });
      rows.splice(3, 0, {key: 'hot_area', label: t.hot_area, mode: 'bins',
                         swatch: {fill: cfg.hot_area.fillColor, color: cfg.hot_area.color, weight: 2,
                                  dash: cfg.hot_area.dashArray}});
      rows.push({key: 'outlier', label: t.outlier, mode: 'bins', swatch: {fill: '#ffffff', color: '#111', weight: 3}});
      if (statuses.island) {
        rows.push({key: 'island', label: t.island, mode: 'bins', swatch: {fill: cfg.island_fill, color: '#6b6b6b'}});
      }
      cfg.emerging.forEach(function (e) {
        if (present[e.key] || e.key === 'no_pattern') {
          rows.push({key: e.key, label: e.label, mode: 'emerging', hidden: true,
                     swatch: {fill: e.fill, color: '#6b6b6b', weight: 0.6}});
        }
      });
      return rows;
    }
    window.wanggeColourBy = function (mode) {
      if (window.wanggeHotspots) {
        window.wanggeHotspots.setStyle(function (ft) {
          return mode === 'emerging' ? ft.properties.emerging_style : ft.properties.style;
        });
      }
      legend.element.querySelectorAll('[data-legend-mode]').forEach(function (el) {
        el.style.display = el.getAttribute('data-legend-mode') === mode ? '' : 'none';
      });
      document.documentElement.setAttribute('data-wangge-colour', mode);
    };
    colour.addEventListener('change', function () { window.wanggeColourBy(colour.value); });

    function draw(data) {
      if (data.refusal) {
        refused(data.refusal);
        legend.set([], []);
        V.loaded();
        return;
      }
      var layer = L.geoJSON({type: 'FeatureCollection', features: data.features}, {
        pane: 'wangge-hotspot-units',
        style: function (ft) { return ft.properties.style; },
        onEachFeature: function (feature, l) {
          var popup = L.popup({maxWidth: 380, className: 'wangge-popup'});
          l.bindPopup(popup);
          l.on('popupopen', function () { popup.setContent(popupContent(feature, popup)); });
        }
      }).addTo(map);
      window.wanggeHotspots = layer;
      var overlays = {};
      overlays[t.units_layer] = layer;
      if (data.density) {
        window.wanggeDensity = L.imageOverlay(data.density.image, data.density.bounds, {
          opacity: 0.85, interactive: false, pane: 'wangge-hotspot-density'});
        overlays[t.density_layer] = window.wanggeDensity;
      }
      var collapsed = !!(window.matchMedia && window.matchMedia('(max-width: 700px)').matches);
      L.control.layers(null, overlays, {collapsed: collapsed, position: 'topright'}).addTo(map);
      var lines = data.summary.map(function (s, i) { return {id: 'wangge-hotspot-summary-' + i, text: s}; });
      data.warnings.forEach(function (s, i) { lines.push({id: 'wangge-hotspot-warning-' + i, text: s, note: true}); });
      if (data.density) { lines.push({id: 'wangge-hotspot-density-note', text: t.density_note}); }
      legend.set(legendRows(data), lines);
      if (data.features.length) { map.fitBounds(layer.getBounds(), {padding: [20, 20], animate: false}); }
      V.loaded();
    }

    W.api(cfg.data_url + window.location.search).then(draw).catch(function (err) {
      W.showError(err);
      V.loaded();
    });
  });
})();
