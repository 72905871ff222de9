// Style sheets the bundle imports: esbuild gathers them into dist/dashboard/app.css.
declare module '*.css';
