//! C sources of generated dependency graphs, shared by the build script (which compiles the bundled sets)
//! and the tests (which compile random graphs).

/// C source of node `i` of a dependency graph: it exports `node_<i>()`, returning `1000 * i` plus the sum of
/// `node_<d>()` over its dependencies `deps`, and `node_<i>_calls()`, the number of `node_<i>()` calls so
/// far (kept in a `.data`/`.bss` counter, so restored state can be checked).
pub fn graph_node_source(i: usize, deps: &[usize]) -> String {
    let mut s = String::from("#include \"llext.h\"\n");
    for d in deps {
        s += &format!("long node_{d}(void);\n");
    }
    s += &format!(
        "static long calls_{i};\nlong node_{i}(void)\n{{\n\tlong v = {};\n\tcalls_{i}++;\n",
        1000 * i
    );
    for d in deps {
        s += &format!("\tv += node_{d}();\n");
    }
    s += &format!(
        "\treturn v;\n}}\nlong node_{i}_calls(void)\n{{\n\treturn calls_{i};\n}}\nLLEXT_EXPORT(node_{i});\nLLEXT_EXPORT(node_{i}_calls);\n"
    );
    s
}

/// The dependencies of node `i` in the bundled sets: a chain (`i - 1`) and, for the larger set, also
/// `i / 2`, which gives nodes several dependents and some several dependencies.
pub fn bundled_deps(i: usize, chain_only: bool) -> Vec<usize> {
    let mut deps = Vec::new();
    if i > 0 {
        deps.push(i - 1);
        if !chain_only && i / 2 != i - 1 {
            deps.push(i / 2);
        }
    }
    deps
}
