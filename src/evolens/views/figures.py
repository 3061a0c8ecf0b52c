"""Plotly figures of stored results, for notebooks (the report and the dashboard draw the same data in the page)."""

from __future__ import annotations

import numpy as np

from ..analyses.projection import Projection, projection_bounds

__all__ = ["projection_figure"]


def projection_figure(projection: Projection, *, title: str | None = None, max_points: int | None = None):
    """A plotly figure of the map: one frame per snapshot (slider + play), samples coloured by label,
    reference data in grey, fixed axes so motion between frames is the model's."""
    import plotly.graph_objects as go

    x0, x1, y0, y1 = projection_bounds([projection.coords[s] for s in projection.steps] + [projection.reference_coords])
    pad_x, pad_y = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
    x_range, y_range = [x0 - pad_x, x1 + pad_x], [y0 - pad_y, y1 + pad_y]

    def reference_trace():
        if projection.reference_coords is None:
            return []
        return [go.Scattergl(x=projection.reference_coords[:, 0], y=projection.reference_coords[:, 1], mode="markers",
                             marker=dict(size=4, color="rgba(150,150,150,0.35)"), name="reference data",
                             hoverinfo="skip")]

    def sample_trace(step: int):
        coords = projection.coords[step][:max_points] if max_points else projection.coords[step]
        labels = projection.labels.get(step)
        text = [f"probe {i}" + (f", label {l}" if labels is not None else "")
                for i, l in zip(projection.ids[step], labels if labels is not None else projection.ids[step])]
        marker = dict(size=7, line=dict(width=0.5, color="white"))
        if labels is not None:
            marker.update(color=np.asarray(labels)[: len(coords)].astype(float), colorscale="Turbo", showscale=True,
                          colorbar=dict(title="label"))
        return go.Scattergl(x=coords[:, 0], y=coords[:, 1], mode="markers", marker=marker, text=text[: len(coords)],
                            hoverinfo="text", name=f"samples at step {step}")

    first = projection.steps[0]
    frames = [go.Frame(data=reference_trace() + [sample_trace(s)], name=str(s)) for s in projection.steps]
    slider = dict(active=0, currentvalue=dict(prefix="step "), pad=dict(t=40), transition=dict(duration=0),
                  steps=[dict(label=str(s), method="animate",
                              args=[[str(s)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                                   transition=dict(duration=0))]) for s in projection.steps])
    play = dict(type="buttons", showactive=False, x=0.0, y=-0.08, xanchor="left",
                buttons=[dict(label="play", method="animate",
                              args=[None, dict(frame=dict(duration=400, redraw=True), fromcurrent=True)]),
                         dict(label="pause", method="animate",
                              args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))])])
    figure = go.Figure(data=reference_trace() + [sample_trace(first)], frames=frames)
    figure.update_layout(title=title or f"evolutionary map ({projection.layout}, {projection.encoder_id})",
                         xaxis=dict(range=x_range, showticklabels=False, zeroline=False),
                         yaxis=dict(range=y_range, showticklabels=False, zeroline=False, scaleanchor="x"),
                         sliders=[slider], updatemenus=[play], template="plotly_white", height=640)
    return figure
