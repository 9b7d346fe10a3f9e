// The grid member's phone: my grid, my tasks and households (/m/), report an incident (/m/report).
// Data comes by URL from the JSON API and is put on the page with textContent (Wangge.el), never as markup.
(function () {
  "use strict";

  const W = window.Wangge;
  const cfg = W.config;
  const N = cfg.mobile_names;
  const $ = (id) => document.getElementById(id);

  function ready() {
    document.documentElement.dataset.wanggeReady = "1";
  }

  function fail(err) {
    W.showError(err);
  }

  // A tel: link, one tap to call; only digits and + - travel into the URL.
  function callLink(phone) {
    const number = String(phone).replace(/[^0-9+\-]/g, "");
    return W.el("a", {class: "m-call", href: "tel:" + number, "aria-label": "拨打 " + phone}, "拨打 " + phone);
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null) q.set(k, String(v));
    }
    return q.toString();
  }

  // --- /m/: my grids, my tasks, the households of my grid ------------------------------------

  function staffItem(person) {
    const role = N.staff_roles[person.role] || person.role;
    return W.el("li", {class: "m-person"},
      W.el("span", {class: "m-role"}, role),
      W.el("span", {class: "m-name"}, person.name),
      person.phone ? callLink(person.phone) : W.el("span", {class: "m-hint"}, "无电话"));
  }

  function gridCard(grid) {
    const path = grid.path.length ? grid.path.join(" › ") + " › " : "";
    return W.el("div", {class: "m-grid", "data-code": grid.code},
      W.el("h3", {}, grid.name),
      W.el("p", {class: "m-hint"}, path + grid.name + "（" + (N.levels[String(grid.level)] || "") + "，" + grid.code + "）"),
      W.el("ul", {class: "m-people"}, ...grid.staff.slice(0, 2).map(staffItem)),
      grid.staff.length > 2 ? W.el("details", {class: "m-people-more"},
        W.el("summary", {}, "其余 " + (grid.staff.length - 2) + " 人"),
        W.el("ul", {class: "m-people"}, ...grid.staff.slice(2).map(staffItem))) : "");
  }

  const ADVANCE_LABELS = {
    visit: "一访完成，进入二报", report: "二报完成，进入三研", study: "三研完成，进入四办",
    handle: "四办完成，进入五问",
  };

  function taskItem(task) {
    const li = W.el("li", {class: "m-task" + (task.overdue ? " m-overdue" : ""), "data-id": String(task.id)});
    render(task);
    return li;

    function render(t) {
      li.className = "m-task" + (t.overdue ? " m-overdue" : "");
      li.dataset.overdue = t.overdue ? "1" : "0";
      const head = W.el("div", {class: "m-task-head"},
        W.el("span", {class: "m-cat"}, N.categories[t.category] || t.category),
        W.el("span", {class: "m-state"}, N.states[t.state] || t.state),
        t.overdue ? W.el("span", {class: "m-badge"}, "已超期") : "");
      const due = t.deadline ? "期限 " + W.time(t.deadline) : "";
      const actions = W.el("div", {class: "m-task-actions"},
        W.el("a", {class: "m-button", href: "/pages/incidents/" + t.id}, "详情"));
      if (cfg.can_work && ADVANCE_LABELS[t.state]) {
        actions.append(actionButton(t, "advance", ADVANCE_LABELS[t.state]));
      } else if (cfg.can_work && t.state === "follow_up") {
        actions.append(actionButton(t, "satisfied", "群众满意，办结"), actionButton(t, "not_satisfied", "不满意，重办"));
      }
      li.replaceChildren(head,
        W.el("p", {class: "m-desc"}, t.description),
        W.el("p", {class: "m-hint"}, "#" + t.id + " · 发生 " + W.time(t.occurred_at) + (due ? " · " + due : "")),
        actions);
    }

    function actionButton(t, action, label) {
      const b = W.el("button", {type: "button", class: "m-button m-advance", "data-action": action}, label);
      b.addEventListener("click", async () => {
        b.disabled = true;
        W.clearError();
        try {
          const out = await W.api("/incidents/" + t.id + "/transitions", {method: "POST", json: {action}});
          if (out.state === "closed") {
            li.remove();
            W.notice("事件 #" + t.id + " 已办结");
          } else {
            render(out);
            W.notice("事件 #" + t.id + " 已进入" + (N.states[out.state] || out.state));
          }
        } catch (err) {
          b.disabled = false;
          fail(err);
        }
      });
      return b;
    }
  }

  // Pages of one list ("加载更多"): `fetchPage(offset)` -> {items, total}.
  function pagedList(list, more, count, fetchPage, itemOf, empty) {
    let offset = 0;
    async function load() {
      more.disabled = true;
      const page = await fetchPage(offset);
      offset += page.items.length;
      list.append(...page.items.map(itemOf));
      count.textContent = "（" + page.total + "）";
      more.hidden = offset >= page.total;
      more.disabled = false;
      if (!list.children.length) list.append(W.el("li", {class: "m-hint"}, empty));
    }
    more.addEventListener("click", () => load().catch(fail));
    return load;
  }

  // Tasks of several grids, in one to-do order: each grid's list comes sorted (overdue first, then by
  // deadline) and is merged by the same key.
  function taskPages(codes) {
    const size = cfg.page_size;
    return async function (offset) {
      const lists = await Promise.all((codes.length ? codes : [null]).map((code) =>
        W.api("/incidents?" + query({grid_code: code, open: "true", order: "deadline", limit: offset + size}))));
      const seen = new Set();
      const all = lists.flatMap((l) => l.items).filter((t) => !seen.has(t.id) && seen.add(t.id));
      all.sort((a, b) => (a.deadline || "9") < (b.deadline || "9") ? -1 : (a.deadline || "9") > (b.deadline || "9") ? 1 : a.id - b.id);
      const total = lists.reduce((n, l) => n + l.total, 0);
      return {items: all.slice(offset, offset + size), total};
    };
  }

  function householdItem(h) {
    const shown = h.personal_fields === "shown";
    const phone = h.phone ? (shown ? callLink(h.phone) : W.el("span", {class: "m-masked"}, h.phone)) : "";
    return W.el("li", {class: "m-household", "data-id": String(h.id), "data-personal": h.personal_fields},
      W.el("div", {}, W.el("span", {class: "m-name"}, h.head_name || ""), " ", W.el("span", {class: "m-hint"}, h.address || "")),
      W.el("div", {class: "m-hint"}, "户号 " + h.household_no + " · " + h.residents + " 人" + (h.elderly ? " · 65岁以上 " + h.elderly : "")),
      phone);
  }

  async function home() {
    const mine = await W.api("/me/grids");
    const gridList = $("m-grid-list");
    if (mine.grids.length) {
      gridList.replaceChildren(...mine.grids.map(gridCard));
    } else {
      gridList.replaceChildren(W.el("p", {class: "m-hint"}, "您的账号不属于某个网格：下面是您可见的全部未办结事件。"));
    }
    if (!cfg.can_report) $("m-report-link").hidden = true;
    const codes = mine.grids.map((g) => g.code);
    const loads = [pagedList($("m-task-list"), $("m-task-more"), $("m-task-count"), taskPages(codes), taskItem,
      "没有未办结的事件")()];
    if (cfg.households && codes.length) {
      $("m-households").hidden = false;
      // The households of my first grid (a supervisor's: the whole village), as the household list shows them.
      const code = codes[0];
      loads.push(pagedList($("m-household-list"), $("m-household-more"), $("m-household-count"),
        (offset) => W.api("/households?" + query({grid_code: code, limit: cfg.page_size, offset})),
        householdItem, "没有住户")());
    }
    await Promise.all(loads);
  }

  // --- /m/report -------------------------------------------------------------------------------

  function option(value, label) {
    return W.el("option", {value}, label);
  }

  function beijingNow() {
    return new Date(Date.now() + 8 * 3600 * 1000).toISOString().slice(0, 16);
  }

  function newExternalId() {
    const r = crypto.getRandomValues(new Uint32Array(4));
    return "m-" + Array.from(r, (x) => x.toString(16)).join("");
  }

  function report() {
    const form = $("m-report-form");
    const category = $("m-category");
    category.append(option("", "请选择类别"),
      ...Object.entries(N.categories).map(([code, name]) => option(code, name)));
    $("m-kind").append(option("", "请选择纠纷类型"),
      ...Object.entries(N.dispute_kinds).map(([code, name]) => option(code, name)));
    category.addEventListener("change", () => { $("m-kind-field").hidden = category.value !== "dispute"; });
    $("m-occurred").value = beijingNow();
    // One id per filled form: a second tap (or a retry on a bad connection) gets the same incident back.
    let externalId = newExternalId();

    // Where: my location, or a place name.
    const gpsBox = $("m-where-gps"), placeBox = $("m-where-place");
    for (const radio of form.querySelectorAll("input[name=where]")) {
      radio.addEventListener("change", () => {
        const byPlace = form.querySelector("input[name=where]:checked").value === "place";
        gpsBox.hidden = byPlace;
        placeBox.hidden = !byPlace;
      });
    }
    const gcj = $("m-gcj");
    gcj.addEventListener("change", () => {
      $("m-crs-note").textContent = gcj.checked
        ? "按 GCJ-02（国内地图应用的坐标）上报，服务器换算为 WGS84。"
        : "手机定位给出的是 WGS84 坐标，按 WGS84 上报。";
    });
    $("m-locate").addEventListener("click", () => {
      if (!navigator.geolocation) {
        fail("这台手机不支持定位：请改用“输入地名”。");
        return;
      }
      $("m-locate").disabled = true;
      navigator.geolocation.getCurrentPosition((pos) => {
        $("m-locate").disabled = false;
        $("m-lon").value = pos.coords.longitude.toFixed(7);
        $("m-lat").value = pos.coords.latitude.toFixed(7);
        // The phone's own fix is WGS84.
        gcj.checked = false;
        gcj.dispatchEvent(new Event("change"));
        W.notice("已获取位置（精度约 " + Math.round(pos.coords.accuracy) + " 米）");
      }, (err) => {
        $("m-locate").disabled = false;
        fail(err.code === 1 ? "没有定位权限：请在浏览器设置中允许定位，或改用“输入地名”。"
          : "暂时无法定位：请稍后再试，或改用“输入地名”。");
      }, {enableHighAccuracy: true, timeout: 15000, maximumAge: 30000});
    });

    $("m-photo").addEventListener("change", () => {
      const file = $("m-photo").files[0];
      $("m-photo-name").textContent = file ? "已选：" + file.name : "未选照片";
    });
    placeSuggestions($("m-place"), $("m-suggestions"));

    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      W.clearError();
      const body = {
        category: category.value, description: $("m-description").value.trim(),
        occurred_at: $("m-occurred").value, external_id: externalId,
      };
      if (!body.category) return fail("请选择类别。");
      if (body.category === "dispute" && $("m-kind").value) body.dispute_kind = $("m-kind").value;
      if (!body.description) return fail("请填写情况描述。");
      if (!body.occurred_at) return fail("请填写发生时间。");
      if (placeBox.hidden) {
        const lon = parseFloat($("m-lon").value), lat = parseFloat($("m-lat").value);
        if (!Number.isFinite(lon) || !Number.isFinite(lat)) return fail("请先点“获取我的位置”，或改用“输入地名”。");
        Object.assign(body, {lon, lat, crs: gcj.checked ? "gcj02" : "wgs84"});
      } else {
        const place = $("m-place").value.trim();
        if (!place) return fail("请输入地名，并从建议中选择。");
        body.place = place;
      }
      const submit = $("m-submit");
      submit.disabled = true;
      try {
        const out = await W.api("/incidents", {method: "POST", json: body});
        await showResult(out);
        externalId = newExternalId();
      } catch (err) {
        fail(inWords(err));
        offerCandidates(err);
      } finally {
        submit.disabled = false;
      }
    });
  }

  // The intake's own refusals in a reporter's words (the rest as the shell says them).
  const INTAKE_REFUSALS = {
    outside_town: (ctx) => "这个位置在本镇辖区之外" + (ctx && ctx.distance_m ? "（距最近的网格约 " + Math.round(ctx.distance_m) + " 米）" : "")
      + "：请核对位置和坐标系，或改用“输入地名”。",
    no_match: () => "没有找到这个地名：请换个说法，或从建议中选择。",
    ambiguous: () => "这个地名对应多处地点：请从下面的候选中选择一个。",
    too_long: () => "地名太长：最多 " + cfg.max_place_chars + " 个字。",
    location: () => "请给出位置：用我的位置，或输入地名。",
    no_grids: () => "尚未导入网格边界，暂时无法上报：请联系管理员。",
  };

  function inWords(err) {
    const errors = (err && err.problem && err.problem.errors) || [];
    if (err instanceof W.ApiError && errors.some((e) => INTAKE_REFUSALS[e.type])) {
      err.lines = errors.map((e, i) => INTAKE_REFUSALS[e.type] ? INTAKE_REFUSALS[e.type](e.ctx) : err.lines[i]);
    }
    return err;
  }

  // A place name the server found ambiguous or unknown: its candidates become suggestions to tap.
  function offerCandidates(err) {
    const candidates = (((err && err.problem && err.problem.errors) || [])
      .flatMap((e) => (e.ctx && e.ctx.candidates) || []));
    if (!candidates.length || $("m-where-place").hidden) return;
    const list = $("m-suggestions");
    list.replaceChildren(...candidates.map((c) => suggestionItem({label: c.label, kind: c.kind}, $("m-place"), list)));
  }

  function suggestionItem(s, input, list) {
    const li = W.el("li", {role: "option", class: "m-suggestion", tabindex: "0"},
      W.el("span", {class: "m-name"}, s.label), W.el("span", {class: "m-kind"}, N.place_kinds[s.kind] || s.kind));
    const pick = () => {
      input.value = s.label;
      input.dataset.picked = s.label;
      list.replaceChildren();
    };
    li.addEventListener("click", pick);
    li.addEventListener("keydown", (ev) => { if (ev.key === "Enter") { ev.preventDefault(); pick(); } });
    return li;
  }

  // Suggestions as you type: debounced, the latest answer wins, capped by the server.
  function placeSuggestions(input, list) {
    let timer = null, asked = 0;
    // A pinyin keyboard sends the letters while a character is being composed: ask when it is chosen.
    input.addEventListener("compositionend", () => input.dispatchEvent(new Event("input")));
    input.addEventListener("input", (ev) => {
      if (ev.isComposing) return;
      clearTimeout(timer);
      delete input.dataset.picked;
      const text = input.value.trim();
      if (!text) { list.replaceChildren(); return; }
      timer = setTimeout(async () => {
        const mine = ++asked;
        try {
          const out = await W.api("/places/suggest?" + query({q: text.slice(0, cfg.max_place_chars), limit: cfg.suggest_limit}));
          if (mine !== asked) return;
          list.replaceChildren(...out.items.map((s) => suggestionItem(s, input, list)));
          if (!out.items.length) list.append(W.el("li", {class: "m-hint"}, "没有相近的地名"));
        } catch (err) {
          if (mine === asked) fail(err);
        }
      }, cfg.suggest_delay_ms);
    });
  }

  async function showResult(out) {
    $("m-report-form").hidden = true;
    const box = $("m-result");
    box.hidden = false;
    box.dataset.incidentId = String(out.id);
    $("m-routing").textContent = out.routing_notice || "";
    $("m-grid-path").replaceChildren(...(out.grid_path || []).map((g) =>
      W.el("li", {"data-code": g.code}, (N.levels[String(g.level)] || "") + "：" + (g.name || g.code))));
    const people = out.assignees || [];
    $("m-assignees").replaceChildren(...(people.length ? people.map((p) => W.el("li", {class: "m-person"},
      W.el("span", {class: "m-role"}, N.staff_roles[p.role] || p.role), W.el("span", {class: "m-name"}, p.name),
      p.phone ? callLink(p.phone) : "")) : [W.el("li", {class: "m-hint"}, "该网格暂无登记的网格员：已进入指挥中心复核。")]));
    $("m-incident-link").href = "/pages/incidents/" + out.id;
    const photo = $("m-photo").files[0];
    const status = $("m-photo-status");
    if (photo) {
      status.textContent = "正在上传照片……";
      const data = new FormData();
      data.append("file", photo, photo.name || "photo.jpg");
      try {
        await W.api("/incidents/" + out.id + "/attachments", {method: "POST", body: data});
        status.textContent = "照片已上传。";
        box.dataset.photo = "uploaded";
      } catch (err) {
        status.textContent = "照片未能上传：" + ((err && err.message) || err);
        box.dataset.photo = "failed";
      }
    }
    window.scrollTo(0, 0);   // the form is gone: the answer starts at the top, below the bar
    box.dataset.done = "1";
  }

  W.ready(() => {
    const run = cfg.page === "home" ? home() : Promise.resolve(report());
    run.catch(fail).finally(ready);
  });
})();
