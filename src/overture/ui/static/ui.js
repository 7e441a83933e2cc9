// Overture dashboard: the filter editor. It shows a filter tree as nested rows (groups of
// conditions) and keeps a hidden <textarea name="filter"> in step with them; the form's htmx
// attributes post that JSON for a live count. Nodes the rows cannot show (not, event conditions)
// stay as editable JSON rows, so no part of a tree is ever dropped.
(function () {
  "use strict";
  var NO_VALUE = { exists: 1, not_exists: 1 };
  var LISTS = { "in": 1, not_in: 1, between: 1 };

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { node.appendChild(c); });
    return node;
  }

  function select(options, value, cls) {
    var s = el("select", { "class": cls || "" });
    options.forEach(function (o) {
      var opt = el("option", { value: o[0], text: o[1] });
      if (o[0] === value) opt.selected = true;
      s.appendChild(opt);
    });
    return s;
  }

  function Editor(root) {
    this.root = root;
    this.target = document.getElementById(root.dataset.target);
    this.fields = JSON.parse(root.dataset.fields || "[]");
    this.operators = JSON.parse(root.dataset.operators || "[]");
    this.kinds = {};
    var self = this;
    this.fields.forEach(function (f) { self.kinds[f.name] = f.type; });
    this.load();
    this.target.addEventListener("change", function () { self.load(); });
  }

  Editor.prototype.load = function () {
    var tree = null;
    try { tree = this.target.value.trim() ? JSON.parse(this.target.value) : null; } catch (e) { return; }
    if (!tree || (!tree.all && !tree.any)) tree = { all: tree && Object.keys(tree).length ? [tree] : [] };
    this.root.innerHTML = "";
    this.root.appendChild(this.group(tree, true));
  };

  Editor.prototype.group = function (node, top) {
    var self = this;
    var mode = node.any ? "any" : "all";
    var box = el("div", { "class": "fgroup", "data-kind": "group" });
    var modeSel = select([["all", "match all of"], ["any", "match any of"]], mode, "mode");
    var addRow = el("button", { type: "button", "class": "small secondary", text: "+ condition" });
    var addGroup = el("button", { type: "button", "class": "small secondary", text: "+ group" });
    var head = el("div", { "class": "fhead" }, [modeSel, addRow, addGroup]);
    if (!top) {
      var drop = el("button", { type: "button", "class": "small secondary", text: "remove group" });
      drop.addEventListener("click", function () { box.remove(); self.changed(); });
      head.appendChild(drop);
    }
    box.appendChild(head);
    var items = el("div", { "class": "items" });
    box.appendChild(items);
    (node[mode] || []).forEach(function (child) { items.appendChild(self.item(child)); });
    addRow.addEventListener("click", function () {
      var first = self.fields.length ? self.fields[0].name : "";
      items.appendChild(self.condition({ field: first, operator: "is", value: "" }));
      self.changed();
    });
    addGroup.addEventListener("click", function () { items.appendChild(self.group({ all: [] }, false)); self.changed(); });
    modeSel.addEventListener("change", function () { self.changed(); });
    return box;
  };

  Editor.prototype.item = function (node) {
    if (node && (node.all || node.any)) return this.group(node, false);
    if (node && typeof node.field === "string" && typeof node.operator === "string") return this.condition(node);
    return this.raw(node);
  };

  Editor.prototype.condition = function (node) {
    var self = this;
    var known = this.fields.some(function (f) { return f.name === node.field; });
    var fieldOpts = this.fields.map(function (f) { return [f.name, f.name + " (" + f.type + ")"]; });
    if (!known) fieldOpts.unshift([node.field, node.field]);
    var field = select(fieldOpts, node.field, "field");
    var op = select(this.operators.map(function (o) { return [o, o.replace(/_/g, " ")]; }), node.operator, "operator");
    var shown = node.value;
    if (Array.isArray(shown)) shown = shown.join(", ");
    var value = el("input", { "class": "value", type: "text", placeholder: "value" });
    value.value = shown === undefined || shown === null ? "" : String(shown);
    var drop = el("button", { type: "button", "class": "small secondary", text: "×", title: "remove condition" });
    var row = el("div", { "class": "frow", "data-kind": "condition" }, [field, op, value, drop]);
    function sync() { value.hidden = !!NO_VALUE[op.value]; }
    sync();
    op.addEventListener("change", function () { sync(); self.changed(); });
    field.addEventListener("change", function () { self.changed(); });
    value.addEventListener("input", function () { self.changed(); });
    drop.addEventListener("click", function () { row.remove(); self.changed(); });
    return row;
  };

  Editor.prototype.raw = function (node) {
    var self = this;
    var area = el("textarea", { rows: "3", "class": "rawnode" });
    area.value = JSON.stringify(node);
    var drop = el("button", { type: "button", "class": "small secondary", text: "×" });
    var row = el("div", { "class": "frow", "data-kind": "raw" }, [area, drop]);
    area.addEventListener("input", function () { self.changed(); });
    drop.addEventListener("click", function () { row.remove(); self.changed(); });
    return row;
  };

  Editor.prototype.typed = function (field, text) {
    var kind = this.kinds[field];
    var t = text.trim();
    if ((kind === "integer" || kind === "number") && t !== "" && !isNaN(Number(t))) return Number(t);
    if (kind === "boolean" && (t === "true" || t === "false")) return t === "true";
    return text;
  };

  Editor.prototype.read = function (box) {
    var self = this;
    if (box.dataset.kind === "group") {
      var mode = box.querySelector(":scope > .fhead > .mode").value;
      var children = [];
      box.querySelector(":scope > .items").childNodes.forEach(function (child) {
        var v = self.read(child);
        if (v !== undefined) children.push(v);
      });
      var out = {};
      out[mode] = children;
      return out;
    }
    if (box.dataset.kind === "condition") {
      var field = box.querySelector(".field").value;
      var op = box.querySelector(".operator").value;
      var node = { field: field, operator: op };
      if (!NO_VALUE[op]) {
        var text = box.querySelector(".value").value;
        node.value = LISTS[op]
          ? text.split(",").map(function (p) { return self.typed(field, p.trim()); }).filter(function (p) { return p !== ""; })
          : self.typed(field, text);
      }
      return node;
    }
    if (box.dataset.kind === "raw") {
      var raw = box.querySelector("textarea").value;
      try { return JSON.parse(raw); } catch (e) { return raw; }  // the server names the bad part
    }
    return undefined;
  };

  Editor.prototype.changed = function () {
    var tree = this.read(this.root.firstChild);
    var empty = tree && tree.all && tree.all.length === 0;
    this.target.value = empty ? "" : JSON.stringify(tree);
    this.target.dispatchEvent(new Event("input", { bubbles: true }));
  };

  function start() {
    document.querySelectorAll("[data-filter-editor]").forEach(function (root) {
      if (!root.editor) root.editor = new Editor(root);
    });
  }
  document.addEventListener("DOMContentLoaded", start);
  document.addEventListener("htmx:afterSettle", start);
})();
