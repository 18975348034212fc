//! Import cycles: strongly connected components (Tarjan) of the module graph,
//! and a shortest cycle through one module of each as the example to report.

use std::collections::{BTreeSet, VecDeque};

/// The strongly connected components of the graph on nodes `0..succ.len()` that
/// hold more than one node, each sorted, in order of their smallest node.
pub(super) fn tangles(succ: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let n = succ.len();
    let mut tarjan = Tarjan {
        succ,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        components: Vec::new(),
    };
    for v in 0..n {
        if tarjan.index[v].is_none() {
            tarjan.visit(v);
        }
    }
    let mut components: Vec<Vec<usize>> = tarjan
        .components
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|mut c| {
            c.sort_unstable();
            c
        })
        .collect();
    components.sort();
    components
}

struct Tarjan<'g> {
    succ: &'g [Vec<usize>],
    index: Vec<Option<usize>>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<usize>,
    next: usize,
    components: Vec<Vec<usize>>,
}

impl Tarjan<'_> {
    /// Recursive: the depth is bounded by the number of modules.
    fn visit(&mut self, v: usize) {
        self.index[v] = Some(self.next);
        self.low[v] = self.next;
        self.next += 1;
        self.stack.push(v);
        self.on_stack[v] = true;
        let succ = self.succ;
        for &w in &succ[v] {
            match self.index[w] {
                None => {
                    self.visit(w);
                    self.low[v] = self.low[v].min(self.low[w]);
                }
                Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                Some(_) => {}
            }
        }
        if Some(self.low[v]) == self.index[v] {
            let mut component = Vec::new();
            while let Some(w) = self.stack.pop() {
                self.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            self.components.push(component);
        }
    }
}

/// A shortest cycle from `start` back to it through `members` only (breadth
/// first), as the nodes in order from `start`; empty if there is none.
pub(super) fn shortest_cycle(
    succ: &[Vec<usize>],
    members: &BTreeSet<usize>,
    start: usize,
) -> Vec<usize> {
    let mut parent: Vec<Option<usize>> = vec![None; succ.len()];
    let mut queue = VecDeque::from([start]);
    while let Some(u) = queue.pop_front() {
        for &w in &succ[u] {
            if w == start {
                let mut path = vec![u];
                let mut at = u;
                while let Some(p) = parent[at] {
                    path.push(p);
                    at = p;
                }
                // Every node reached has a chain of parents back to `start`.
                path.reverse();
                return path;
            }
            if members.contains(&w) && parent[w].is_none() && w != start {
                parent[w] = Some(u);
                queue.push_back(w);
            }
        }
    }
    Vec::new()
}
