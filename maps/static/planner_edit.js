/* The planner's map, editing a draft plan (planner role): open or start a draft for the village (or from
   the suggestion shown), select unit cells and paint them into a grid (one reassign edit per paint, with
   If-Match: the plan's version), undo/redo paints (undo = the inverse edit), split a grid by a line drawn
   with Leaflet-Geoman, and after every edit redraw the plan's grids, its validation markers and the
   impact table; publish now or at a chosen instant, or undo a published plan. Server data reaches the
   page through textContent only. planner.js calls window.WanggePlannerEdit(context) once the page is ready. */
(function () {
  'use strict';

  window.WanggePlannerEdit = function (ctx) {
    var W = window.Wangge, V = W.view, map = ctx.map, cfg = W.config, t = cfg.edit_text;
    var plan = null;          // the plan open: PlanOut (id, version, status)
    var planGrids = {};       // code -> feature of the plan's proposed grids (only those it touches)
    var liveGrids = {};       // code -> current group grid of the village
    var selected = {};        // unit id -> layer
    var done = [], redoable = [];  // paints: {unit_kind, groups: {from_code: [unit ids]}, to_code}
    var busy = false;
    var root = document.documentElement;

    // --- layers ---------------------------------------------------------------------------------
    map.createPane('wangge-plan').style.zIndex = 406;
    var planLayer = L.geoJSON(null, {
      pane: 'wangge-plan', interactive: false, pmIgnore: true,
      style: function (f) {
        return {color: f.properties.new ? '#d7301f' : '#2b8cbe', weight: 2.5, fillOpacity: 0.08,
                dashArray: f.properties.new ? '6 4' : null};
      }
    }).addTo(map);
    var markers = L.layerGroup().addTo(map);
    window.wanggePlanLayer = planLayer;
    window.wanggePlanMarkers = markers;

    // --- controls -------------------------------------------------------------------------------
    function button(id, label) { return W.el('button', {type: 'button', id: id}, label); }
    var plans = V.select('plan-pick', [['', t.plan_pick]], '');
    var openButton = button('plan-open', t.open);
    var newButton = button('plan-new', t.create);
    var fromSuggestion = button('plan-from-suggestion', t.from_suggestion);
    var info = W.el('div', {id: 'plan-info', 'class': 'wangge-legend-line', 'aria-live': 'polite'});
    var target = V.select('plan-target', [['', t.target_pick]], '');
    var paintButton = button('plan-paint', t.paint);
    var clearButton = button('plan-clear', t.clear);
    var undoButton = button('plan-undo', t.undo);
    var redoButton = button('plan-redo', t.redo);
    var splitGrid = V.select('plan-split-grid', [['', t.split_pick]], '');
    var drawButton = button('plan-draw', t.draw);
    var finishButton = button('plan-draw-finish', t.draw_finish);
    var selectedInfo = W.el('div', {id: 'plan-selected', 'class': 'wangge-legend-line'});
    var validationBox = W.el('div', {id: 'plan-validation', 'class': 'wangge-planner-table'});
    var impactBox = W.el('div', {id: 'plan-impact', 'class': 'wangge-planner-table'});
    [validationBox, impactBox].forEach(function (b) { b.style.overflow = 'auto'; b.style.maxHeight = '25vh'; });
    var effective = W.el('input', {id: 'plan-effective', type: 'datetime-local'});
    var publishButton = button('plan-publish', t.publish);
    var undoPublished = button('plan-undo-published', t.undo_published);
    var conflict = W.el('div', {id: 'plan-conflict', hidden: true, 'class': 'wangge-legend-line'});
    var reloadButton = button('plan-reload', t.reload);
    conflict.appendChild(W.el('span', {id: 'plan-conflict-text'}, t.conflict));
    conflict.appendChild(reloadButton);
    var editing = W.el('div', {id: 'plan-editing', hidden: true},
      W.el('label', {'for': 'plan-target'}, t.target), target, paintButton, clearButton, selectedInfo,
      undoButton, redoButton,
      W.el('label', {'for': 'plan-split-grid'}, t.split), splitGrid, drawButton, finishButton,
      W.el('div', {'class': 'wangge-legend-line'}, t.validation), validationBox,
      W.el('div', {'class': 'wangge-legend-line'}, t.impact), impactBox,
      cfg.can_publish ? W.el('div', {},
        W.el('label', {'for': 'plan-effective'}, t.effective), effective, publishButton, undoPublished) : null);
    finishButton.hidden = true;
    V.panel(map, t.panel_title, W.el('div', {},
      W.el('label', {'for': 'plan-pick'}, t.plan), plans, openButton, newButton, fromSuggestion, info, conflict,
      editing), 'plan-panel');

    function mark(name, value) { root.setAttribute('data-plan-' + name, String(value)); }
    function headers() { return {'If-Match': '"' + plan.version + '"'}; }

    function fail(err) {
      if (err && err.status === 409) {
        conflict.hidden = false;
        mark('conflict', '1');
      } else {
        W.showError(err);
      }
    }

    // --- the plan's state on the map -------------------------------------------------------------
    function groupsOfVillage() {
      var out = {};
      Object.keys(liveGrids).forEach(function (c) { out[c] = liveGrids[c]; });
      Object.keys(planGrids).forEach(function (c) {
        var f = planGrids[c];
        if (f.properties.level !== 4) { return; }
        if (f.properties.retired || !f.geometry) { delete out[c]; } else if (f.properties.parent_code === ctx.village()) {
          out[c] = f;
        }
      });
      return out;
    }

    function fillGridPickers() {
      var grids = groupsOfVillage();
      [target, splitGrid].forEach(function (sel) {
        var keep = sel.value;
        while (sel.options.length > 1) { sel.remove(1); }
        Object.keys(grids).sort().forEach(function (c) {
          sel.appendChild(W.el('option', {value: c}, grids[c].properties.name + '（' + c + '）'));
        });
        if (grids[keep]) { sel.value = keep; }
      });
    }

    function loadLive() {
      liveGrids = {};
      if (!ctx.village()) { return Promise.resolve(); }
      return W.api(V.withQuery(cfg.grids_url, {level: 4, parent_code: ctx.village(), limit: cfg.limit}))
        .then(function (fc) { (fc.features || []).forEach(function (f) { liveGrids[f.properties.code] = f; }); });
    }

    function drawValidation(v) {
      markers.clearLayers();
      var list = W.el('ul', {id: 'plan-problems'});
      list.appendChild(W.el('li', {id: 'plan-state'}, v.state_zh));
      v.problems.forEach(function (p) {
        var text = p.type_zh + (p.loc && p.loc.length ? '（' + p.loc.join(' ') + '）' : '');
        list.appendChild(W.el('li', {'data-type': p.type}, text));
        if (p.ctx && typeof p.ctx.lon === 'number' && typeof p.ctx.lat === 'number') {
          L.circleMarker([p.ctx.lat, p.ctx.lon], {radius: 7, color: '#b10026', fillColor: '#fd8d3c', fillOpacity: 0.9})
            .bindTooltip(function () { return W.el('span', {}, text); }).addTo(markers);
        }
      });
      validationBox.replaceChildren(list);
      mark('validation', v.state + ':' + v.problems.length);
    }

    function drawImpact(r) {
      var table = W.el('table', {'class': 'wangge-popup-table', id: 'plan-moves'});
      var head = table.createTHead().insertRow();
      t.impact_columns.forEach(function (c) { head.appendChild(W.el('th', {}, c)); });
      var body = table.createTBody();
      r.moves.forEach(function (m) {
        var tr = body.insertRow();
        [m.from || t.none_grid, m.to || t.none_grid, m.households, m.residents, m.open_incidents]
          .forEach(function (v) {
            var cell = tr.insertCell();
            cell.textContent = String(v);
            cell.style.whiteSpace = 'nowrap';
          });
        tr.setAttribute('data-from', m.from || '');
        tr.setAttribute('data-to', m.to || '');
      });
      impactBox.replaceChildren(table);
    }

    function refresh() {
      var id = plan.id;
      // A plan that touches no grid yet has no impact to preview (and the server has none to give).
      var bounds = W.api(cfg.plans_url + '/' + id + '/boundaries');
      var impact = bounds.then(function (fc) {
        return (fc.features || []).length ? W.api(cfg.plans_url + '/' + id + '/impact') : {moves: []};
      });
      return Promise.all([bounds, W.api(cfg.plans_url + '/' + id + '/validation'), impact, loadLive()])
        .then(function (r) {
        planGrids = {};
        planLayer.clearLayers();
        (r[0].features || []).forEach(function (f) {
          planGrids[f.properties.code] = f;
          if (f.geometry && !f.properties.retired) { planLayer.addData(f); }
        });
        fillGridPickers();
        drawValidation(r[1]);
        drawImpact(r[2]);
        info.textContent = t.info.replace('{name}', plan.name).replace('{status}', plan.status_zh)
          .replace('{version}', String(plan.version));
        undoButton.disabled = !done.length || plan.status !== 'draft';
        redoButton.disabled = !redoable.length || plan.status !== 'draft';
        editing.hidden = false;
        conflict.hidden = true;
        mark('version', plan.version);
      });
    }

    function setPlan(p) {
      plan = p;
      mark('id', p.id);
      return refresh();
    }

    function listPlans() {
      return W.api(cfg.plans_url).then(function (list) {
        while (plans.options.length > 1) { plans.remove(1); }
        list.filter(function (p) { return p.status !== 'discarded'; }).forEach(function (p) {
          plans.appendChild(W.el('option', {value: String(p.id)}, p.name + '（' + p.status_zh + '）'));
        });
      });
    }

    function reload() {
      W.clearError();
      return W.api(cfg.plans_url + '/' + plan.id).then(setPlan).catch(fail);
    }

    openButton.addEventListener('click', function () {
      if (!plans.value) { return; }
      W.clearError();
      done = []; redoable = [];
      W.api(cfg.plans_url + '/' + plans.value).then(setPlan).catch(fail);
    });
    newButton.addEventListener('click', function () {
      W.clearError();
      if (!ctx.village()) { W.showError(t.no_village); return; }
      done = []; redoable = [];
      W.api(cfg.plans_url, {method: 'POST', json: {name: ctx.villageName() + t.new_name}})
        .then(function (p) { return listPlans().then(function () { plans.value = String(p.id); return setPlan(p); }); })
        .catch(fail);
    });
    fromSuggestion.addEventListener('click', function () {
      var s = ctx.suggestion();
      if (!s) { W.showError(t.no_suggestion); return; }
      W.clearError();
      done = []; redoable = [];
      W.api(cfg.suggestions_url, {method: 'POST', json: s})
        .then(function (p) { return listPlans().then(function () { plans.value = String(p.id); return setPlan(p); }); })
        .catch(fail);
    });
    reloadButton.addEventListener('click', function () { done = []; redoable = []; reload(); });

    // --- selecting and painting units ----------------------------------------------------------
    function unitKind() { return {household: 'household_id', natural_village: 'natural_village'}[ctx.unitKind()]; }

    function updateSelected() {
      var n = Object.keys(selected).length;
      selectedInfo.textContent = t.selected.replace('{n}', String(n));
      mark('selected', n);
    }
    function clearSelection() {
      Object.keys(selected).forEach(function (id) { ctx.unitLayer.resetStyle(selected[id]); });
      selected = {};
      updateSelected();
    }
    ctx.unitLayer.on('click', function (e) {
      if (!plan || plan.status !== 'draft' || map.pm.Draw.Line.enabled()) { return; }
      var layer = e.layer, id = String(layer.feature.properties.unit_id);
      if (selected[id]) {
        ctx.unitLayer.resetStyle(layer);
        delete selected[id];
      } else {
        layer.setStyle({fillColor: '#fee08b', fillOpacity: 0.7, color: '#d73027'});
        selected[id] = layer;
      }
      updateSelected();
    });
    clearButton.addEventListener('click', clearSelection);

    // The grid of the plan a unit lies in: the one holding a point inside its cell.
    function ringHas(ring, x, y) {
      var inside = false;
      for (var i = 0, j = ring.length - 1; i < ring.length; j = i++) {
        var xi = ring[i][0], yi = ring[i][1], xj = ring[j][0], yj = ring[j][1];
        if ((yi > y) !== (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi) { inside = !inside; }
      }
      return inside;
    }
    function geomHas(g, x, y) {
      var polys = g.type === 'Polygon' ? [g.coordinates] : g.coordinates;
      return polys.some(function (rings) {
        return ringHas(rings[0], x, y) && !rings.slice(1).some(function (h) { return ringHas(h, x, y); });
      });
    }
    function gridOf(layer) {
      var c = layer.getBounds().getCenter(), grids = groupsOfVillage();
      var found = Object.keys(grids).filter(function (code) { return geomHas(grids[code].geometry, c.lng, c.lat); });
      return found.length ? found[0] : layer.feature.properties.grid_code;
    }

    function send(body) {
      busy = true;
      return W.api(cfg.plans_url + '/' + plan.id + '/edits', {method: 'POST', json: body, headers: headers()})
        .then(function (answer) { plan = answer.plan; return answer; })
        .then(function (answer) { busy = false; return answer; }, function (err) { busy = false; throw err; });
    }

    // A paint sends one reassign edit; its inverse paints each source grid's units back into it.
    function apply(paint, inverse) {
      if (!inverse) {
        var ids = [];
        Object.keys(paint.groups).forEach(function (from) { ids = ids.concat(paint.groups[from]); });
        return send({kind: 'reassign', unit_kind: paint.unit_kind, unit_ids: ids, to_code: paint.to_code});
      }
      var froms = Object.keys(paint.groups).filter(function (f) { return f && f !== paint.to_code; });
      return froms.reduce(function (chain, from) {
        return chain.then(function () {
          return send({kind: 'reassign', unit_kind: paint.unit_kind, unit_ids: paint.groups[from], to_code: from,
                       from_code: paint.to_code});
        });
      }, Promise.resolve());
    }
    function splitEdit(s, inverse) {
      if (!inverse) {
        return send({kind: 'split', code: s.code, line: s.line}).then(function (a) { s.created = a.report.created; });
      }
      return send({kind: 'merge', codes: [s.code].concat(s.created), into: s.code});
    }
    function run(step, inverse) {
      return step.kind === 'split' ? splitEdit(step, inverse) : apply(step, inverse);
    }

    paintButton.addEventListener('click', function () {
      if (busy || !plan) { return; }
      W.clearError();
      var kind = unitKind();
      if (!kind) { W.showError(t.group_units); return; }
      if (!target.value) { W.showError(t.no_target); return; }
      var ids = Object.keys(selected);
      if (!ids.length) { W.showError(t.no_selection); return; }
      var groups = {};
      ids.forEach(function (id) {
        var from = gridOf(selected[id]) || '';
        (groups[from] = groups[from] || []).push(id);
      });
      var paint = {kind: 'paint', unit_kind: kind, groups: groups, to_code: target.value};
      apply(paint, false).then(function () {
        done.push(paint);
        redoable = [];
        clearSelection();
        return refresh();
      }).then(function () { mark('edits', done.length); }).catch(fail);
    });

    // Undo runs the last done step's inverse, redo the last undone step again; the step changes stacks.
    function replay(from, to, inverse) {
      if (busy || !from.length) { return; }
      W.clearError();
      var step = from[from.length - 1];
      run(step, inverse).then(function () {
        from.pop();
        to.push(step);
        return refresh();
      }).then(function () { mark('edits', done.length); }).catch(fail);
    }
    undoButton.addEventListener('click', function () { replay(done, redoable, true); });
    redoButton.addEventListener('click', function () { replay(redoable, done, false); });

    // --- splitting by a drawn line (Leaflet-Geoman free build) ---------------------------------
    drawButton.addEventListener('click', function () {
      if (!plan || !splitGrid.value) { W.showError(t.no_split_grid); return; }
      W.clearError();
      map.pm.enableDraw('Line', {snappable: false, continueDrawing: false});
      finishButton.hidden = false;
      mark('drawing', '1');
    });
    finishButton.addEventListener('click', function () {
      if (map.pm.Draw.Line.enabled()) { map.pm.Draw.Line._finishShape(); }
    });
    map.on('pm:create', function (e) {
      finishButton.hidden = true;
      map.pm.disableDraw();
      root.removeAttribute('data-plan-drawing');
      var line = e.layer.toGeoJSON().geometry;
      map.removeLayer(e.layer);
      var step = {kind: 'split', code: splitGrid.value, line: line, created: []};
      splitEdit(step, false).then(function () {
        done.push(step);
        redoable = [];
        return refresh();
      }).then(function () { mark('edits', done.length); mark('split', step.created.join(',')); }).catch(function (err) {
        // A line that does not cut the grid (or is not a line) changes nothing: say so in Chinese.
        if (err && err.status === 422) {
          W.showError(t.split_refused);
          mark('split-refused', step.code);
        } else {
          fail(err);
        }
      });
    });

    // --- publish, schedule, undo a published plan ---------------------------------------------------
    function instant(local) { return local ? (local.length === 16 ? local + ':00' : local) + '+08:00' : null; }
    publishButton.addEventListener('click', function () {
      if (!plan || busy) { return; }
      W.clearError();
      W.api(cfg.plans_url + '/' + plan.id + '/publish',
            {method: 'POST', json: {effective_at: instant(effective.value)}, headers: headers()})
        .then(function (a) {
          plan = a.plan;
          done = []; redoable = [];
          W.notice(plan.status === 'scheduled' ? t.scheduled : t.published);
          mark('published', plan.status + ':' + plan.id);
          return Promise.all([refresh(), ctx.reloadCurrent()]);
        }).catch(fail);
    });
    undoPublished.addEventListener('click', function () {
      if (!plan || busy) { return; }
      W.clearError();
      W.api(cfg.plans_url + '/' + plan.id + '/undo', {method: 'POST', json: {effective_at: null}, headers: headers()})
        .then(function (a) {
          W.notice(t.undone);
          mark('undone', a.plan.id);
          return Promise.all([setPlan(a.plan), ctx.reloadCurrent(), listPlans()]);
        }).catch(fail);
    });

    ctx.onVillage(function () {
      clearSelection();
      loadLive().then(fillGridPickers).catch(W.showError);
    });
    updateSelected();
    listPlans().then(function () { mark('ready', '1'); }).catch(W.showError);
  };
})();
