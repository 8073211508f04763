// This Source Code Form is subject to the terms of the Mozilla Public
// License, v. 2.0. If a copy of the MPL was not distributed with this
// file, You can obtain one at https://mozilla.org/MPL/2.0/.

(() => {
    const darkThemes = ['ayu', 'navy', 'coal'];
    const lightThemes = ['light', 'rust'];

    const classList = document.getElementsByTagName('html')[0].classList;

    let lastThemeWasLight = true;
    for (const cssClass of classList) {
        if (darkThemes.includes(cssClass)) {
            lastThemeWasLight = false;
            break;
        }
    }

    const theme = lastThemeWasLight ? 'default' : 'dark';
    mermaid.initialize({ startOnLoad: true, theme });

    // Added to mdbook-mermaid 0.17.1's file: print.html calls window.print() 100ms after
    // 'load', when mermaid (which starts on 'load' too) may not have drawn every diagram yet,
    // and an undrawn diagram prints as its source. Make print wait until each diagram is an
    // <svg> (mermaid draws a "Syntax error" one for a broken diagram), for 10s at most.
    // ci/browser_test.py checks that print.html prints with every diagram drawn.
    const print = window.print.bind(window);
    window.print = () => {
        const deadline = Date.now() + 10000;
        const printWhenDrawn = () => {
            const undrawn = [...document.querySelectorAll('pre.mermaid')].some((el) => !el.querySelector('svg'));
            if (undrawn && Date.now() < deadline) {
                window.setTimeout(printWhenDrawn, 50);
            } else {
                print();
            }
        };
        printWhenDrawn();
    };

    // Simplest way to make mermaid re-render the diagrams in the new theme is via refreshing the page

    for (const darkTheme of darkThemes) {
        document.getElementById('mdbook-theme-' + darkTheme).addEventListener('click', () => {
            if (lastThemeWasLight) {
                window.location.reload();
            }
        });
    }

    for (const lightTheme of lightThemes) {
        document.getElementById('mdbook-theme-' + lightTheme).addEventListener('click', () => {
            if (!lastThemeWasLight) {
                window.location.reload();
            }
        });
    }
})();
