"""An outside analysis for resnet-probe: how often a prediction survives deleting each unit."""
